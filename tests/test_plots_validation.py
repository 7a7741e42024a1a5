"""The validation figures render headless, without any warning, on given or new axes."""

from __future__ import annotations

import io
import warnings

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

import gmmpyro
from gmmpyro.plotting import (
    plot_contour_agreement,
    plot_marginals,
    plot_mixture,
    plot_pairs,
    plot_parameter_dependence,
    plot_training_history,
)
from gmmpyro.toy import ToyModel
from gmmpyro.validation import (
    compare_marginals,
    compare_pairs,
    contour_agreement,
    reweighted_dependence,
    simulated_dependence,
)

GRID = [[cx, cy] for cx in (-1.5, 0.0, 1.5) for cy in (-1.5, 0.0, 1.5)]
POINTS = [[cx, cy] for cx in (-1.5, 0.0, 1.5) for cy in (-1.5, 0.0, 1.5)]


@pytest.fixture(scope="module")
def trained():
    toy = ToyModel()
    x, theta = toy.grid_dataset(200, grid=GRID, seed=0)
    config = gmmpyro.NetworkConfig(n_gauss=4, A1=8, B1=8, B2=2, C=1, D=1)
    model = gmmpyro.DensityModel(toy.observables, ["cx", "cy"], config=config)
    model.fit(x, theta, config=gmmpyro.TrainingConfig(max_epochs=2), progress=False)
    return toy, model, x, theta


@pytest.fixture(scope="module")
def results(trained):
    toy, model, x, theta = trained
    x_model = model.sample(2000, torch.zeros(2), seed=1)
    x_ref = toy.sample(2000, [0.0, 0.0], seed=2)
    marginals = compare_marginals(x_model, x_ref, observables=toy.observables, bins=20)
    pairs = compare_pairs(x_model, x_ref, observables=toy.observables, bins=10)
    dependence = reweighted_dependence(model, [0.0, 0.0], POINTS, n=4000, bins=15)
    truth = reweighted_dependence(toy, [0.0, 0.0], POINTS, n=4000, edges=dependence.edges, source="truth")
    simulated = simulated_dependence(x, theta, [0.0, 0.0], POINTS, edges=dependence.edges)
    grid = {"cx": (-1.5, 1.5, 15), "cy": (-1.5, 1.5, 15)}
    agreement = contour_agreement(toy, toy, [[0.8, 0.5], [-0.6, -0.8]], grid=grid)
    return marginals, pairs, (dependence, truth, simulated), agreement


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _render(make):
    """Build and draw a figure with every warning an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = make()
        fig.savefig(io.BytesIO(), format="png", dpi=50)
    assert isinstance(fig, Figure)
    return fig


def test_marginals_new_and_given_axes(results):
    marginals = results[0]
    fig = _render(lambda: plot_marginals(marginals))
    assert len([a for a in fig.axes if a.get_visible()]) == 8  # a main and a ratio panel per observable
    fig2, axes = plt.subplots(2, 4)
    assert _render(lambda: plot_marginals(marginals, axes=axes.T, log=True)) is fig2
    with pytest.raises(ValueError, match="needs 8 axes"):
        plot_marginals(marginals, axes=axes[0])


def test_marginals_in_latent_space(trained):
    _, model, x, _ = trained
    u = model.projection.forward(x)
    result = compare_marginals(
        u[::2], u[1::2], observables=["x0", "x1", "x2", "x3"], ranges=[(-5, 5)] * 4, space="latent"
    )
    fig = _render(lambda: plot_marginals(result))
    assert "latent x0" in [a.get_xlabel() for a in fig.axes]


@pytest.mark.parametrize("show", ["pull", "model", "reference"])
def test_pair_views(results, show):
    pairs = results[1]
    fig = _render(lambda: plot_pairs(pairs, show=show))
    visible = [a for a in fig.axes if a.get_visible() and a.get_label() != "<colorbar>"]
    assert len(visible) == 6  # the lower triangle of a 3 × 3 grid
    if show == "pull":
        assert [t.get_text() for t in fig.legends[0].get_texts()] == ["empty", "model only", "reference only"]


def test_pull_map_marks_one_sided_cells_distinctly():
    model = np.array([[0.1, 0.1], [0.1, 0.1], [0.9, 0.9]])
    reference = np.array([[0.1, 0.1], [0.1, 0.9], [0.1, 0.9]])
    result = compare_pairs(model, reference, bins=2, ranges=[(0, 1), (0, 1)])
    _, ax = plt.subplots()
    _render(lambda: plot_pairs(result, axes=[ax]))
    status_mesh = ax.collections[1]
    colours = status_mesh.get_facecolors()  # the three one-sided or empty cells, in mesh order
    assert {tuple(np.round(c[:3], 2)) for c in colours} == {(1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (0.6, 0.6, 0.6)}
    with pytest.raises(ValueError, match="show must be"):
        plot_pairs(result, show="ratio")


def test_parameter_dependence(results):
    dependence, truth, simulated = results[2]
    fig = _render(lambda: plot_parameter_dependence(dependence, observable="x2", compare=[truth, simulated]))
    assert len(fig.axes) == 9
    titles = [a.get_title() for a in fig.axes]
    assert titles[0] == "cx=-1.5, cy=1.5"  # laid out as the parameter plane: top left
    fig2, axes = plt.subplots(3, 3)
    assert _render(lambda: plot_parameter_dependence(dependence, observable="x0", axes=axes)) is fig2
    other = reweighted_dependence(ToyModel(), [0.0, 0.0], POINTS, n=500, bins=5)
    with pytest.raises(ValueError, match="other bin edges"):
        plot_parameter_dependence(dependence, observable="x0", compare=[other])
    with pytest.raises(ValueError, match="unknown observable"):
        plot_parameter_dependence(dependence, observable="x9")


def test_mixture(trained):
    _, model, x, theta = trained
    fig = _render(lambda: plot_mixture(model, "x0", [[0.0, 0.0], [1.5, 0.0]], reference=(x, theta)))
    assert len(fig.axes) == 6  # density, reference/model, deformation × 2 points
    first = fig.axes[0]
    assert len(first.lines) >= model.config.n_gauss + 1  # components and the total
    _render(lambda: plot_mixture(model, "x2", [[0.0, 0.0]], u_prev=[0.1, -0.2]))
    with pytest.raises(ValueError, match="not first in the autoregressive order"):
        plot_mixture(model, "x1", [[0.0, 0.0]], u_prev=[0.0], reference=(x, theta))


def test_contour_agreement_figure(results):
    agreement = results[3]
    fig = _render(lambda: plot_contour_agreement(agreement, trained_points=GRID))
    assert len([a for a in fig.axes if a.get_visible()]) == 2
    ax = fig.axes[0]
    assert len(ax.lines) >= 4 + 3  # two contours × two densities, two MLEs, the truth
    fig2, axes = plt.subplots(1, 2)
    assert _render(lambda: plot_contour_agreement(agreement, axes=axes, zoom=False)) is fig2
    assert axes[0].get_xlim() == (-1.5, 1.5)


def test_contour_figure_of_one_point_is_readable():
    """One pseudo-dataset at a low dpi (the report's --quick): a figure of sensible size whose legend
    lies inside it (it was 3 inches wide, and the one-row legend stuck out on both sides)."""
    toy = ToyModel()
    one = contour_agreement(toy, toy, [[0.0, 0.0]], grid={"cx": (-1.5, 1.5, 9), "cy": (-1.5, 1.5, 9)}, window=0.4)
    fig = _render(lambda: plot_contour_agreement(one))
    fig.savefig(io.BytesIO(), format="png", dpi=80)  # lays the figure out at 80 dpi
    width, height = fig.get_size_inches() * 80
    assert width >= 320 and height >= 300
    box, frame = fig.legends[0].get_window_extent(), fig.bbox
    assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
    assert len(fig.legends[0].get_texts()) == 4


def test_training_history(trained):
    model = trained[1]
    fig = _render(lambda: plot_training_history(model.history))
    assert len(fig.axes) == 2 and fig.axes[1].get_yscale() == "log"
    with pytest.raises(ValueError, match="no training history"):
        plot_training_history(None)


def test_given_axes_leave_pyplot_alone(results):
    before = plt.get_fignums()
    fig, axes = plt.subplots(2, 4)
    plot_marginals(results[0], axes=axes.T)
    assert plt.get_fignums() == [*before, fig.number]  # drew on the given axes, made no new figure
