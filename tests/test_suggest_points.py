"""``designs.disagreement`` and ``designs.suggest_points``: where an ensemble's members disagree."""

from __future__ import annotations

import copy
import functools
import math
import warnings

import pytest
import torch

from gmmpyro import DensityModel, NetworkConfig, TrainingConfig, designs
from gmmpyro.toy import ToyModel

NETWORK = NetworkConfig(n_gauss=6, A1=16, B1=16, B2=4, C=1, D=1, s_f=0.1, s_mu=0.1, s_sigma=0.1)
HOLE = 0.3  # no training events with cx > HOLE and cy > HOLE


def _in_hole(theta: torch.Tensor) -> torch.Tensor:
    return (theta[:, 0] > HOLE) & (theta[:, 1] > HOLE)


@functools.cache
def _ensemble_with_a_hole() -> DensityModel:
    """Three members trained on θ drawn uniformly over the toy's box except the corner ``_in_hole``."""
    toy = ToyModel()
    theta = designs.uniform(6000, toy.theta_bounds, seed=0)
    theta = theta[~_in_hole(theta)]  # the range of each parameter still spans the box
    x = toy.simulate(theta, seed=1)
    torch.manual_seed(0)
    model = DensityModel(toy.observables, toy.params, config=NETWORK, ensemble=3)
    model.fit(x, theta, config=TrainingConfig(batch_size=250, max_epochs=10), progress=False)
    return model


def test_the_members_disagree_most_where_no_events_were_simulated():
    model = _ensemble_with_a_hole()
    candidates = designs.sobol(64, ToyModel().theta_bounds, seed=2)
    score = designs.disagreement(model, candidates.float(), events=64, seed=1)
    # each draw's log ratio own/mixture lies in (-inf, log K], so the mean does too
    assert score.shape == (64,) and (score <= math.log(3)).all()
    hole, rest = score[_in_hole(candidates)], score[~_in_hole(candidates)]
    # 11 of the 64 candidates lie in the corner; compare with the spread of the 53 outside (3 standard errors)
    assert hole.mean() > rest.mean() + 3 * rest.std() / rest.numel() ** 0.5
    picked = designs.suggest_points(model, 4, candidates=64, events=64, seed=2)
    assert picked.shape == (4, 2)
    assert _in_hole(picked[:2]).all(), f"the first picks should lie in the empty corner, got {picked[:2].tolist()}"
    # the picks keep the default distance 0.5 / √4 = 0.25 of the ranges from each other
    unit = (picked + 1.5) / 3.0
    distances = torch.pdist(unit)
    assert distances.min() >= 0.25


def test_identical_members_do_not_disagree():
    model = copy.deepcopy(_ensemble_with_a_hole())
    d = len(model.observables)
    for m in (1, 2):
        for position in range(d):
            model.networks[m * d + position].load_state_dict(model.networks[position].state_dict())
    score = designs.disagreement(model, torch.tensor([[0.9, 0.9], [-1.0, 0.2]]), events=64, seed=0)
    assert score.abs().max() < 1e-5  # float32 rounding of log-sum-exp over equal terms
    torch.testing.assert_close(
        designs.disagreement(model, torch.tensor([[0.9, 0.9]]), events=64, seed=5),
        designs.disagreement(model, torch.tensor([[0.9, 0.9]]), events=64, seed=5),
    )


def test_bounds_given_by_name_follow_the_names_not_their_order():
    picked = designs.suggest_points(
        _ensemble_with_a_hole(), 3, {"cy": (0.9, 1.0), "cx": (-1.0, -0.9)}, candidates=8, events=8, seed=0
    )
    assert ((picked[:, 0] >= -1.0) & (picked[:, 0] <= -0.9)).all()
    assert ((picked[:, 1] >= 0.9) & (picked[:, 1] <= 1.0)).all()


def test_bad_requests_for_points_get_clear_errors():
    toy = ToyModel()
    model = _ensemble_with_a_hole()
    with pytest.raises(ValueError, match="not trained yet"):
        designs.suggest_points(DensityModel(toy.observables, toy.params, config=NETWORK, ensemble=2), 2)
    single = copy.deepcopy(model.member(0))
    with pytest.raises(ValueError, match=r"needs an ensemble: train DensityModel\(\.\.\., ensemble=K\)"):
        designs.suggest_points(single, 2)
    with pytest.raises(ValueError, match="cannot be picked from 8 candidates"):
        designs.suggest_points(model, 9, candidates=8)
    with pytest.raises(ValueError, match="bounds give 1 parameters, the model has 2"):
        designs.suggest_points(model, 2, [(-1.0, 1.0)], candidates=8)
    with pytest.raises(ValueError, match=r"bounds name \['cx', 'nu'\]; the model's parameters are \['cx', 'cy'\]"):
        designs.suggest_points(model, 2, {"nu": (0.0, 1.0), "cx": (0.0, 1.0)}, candidates=8)
    with pytest.raises(ValueError, match="min_distance must be a finite number"):
        designs.suggest_points(model, 2, candidates=8, min_distance=float("nan"))
    with pytest.raises(ValueError, match=r"theta must have shape \(C, 2\)"):
        designs.disagreement(model, torch.zeros(2))
    with pytest.raises(ValueError, match="theta contains NaN"):
        designs.disagreement(model, torch.tensor([[float("nan"), 0.0]]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # outside the training range: allowed, with the model's warning
        assert designs.disagreement(model, torch.tensor([[2.0, 2.0]]), events=8, seed=0).isfinite().all()
