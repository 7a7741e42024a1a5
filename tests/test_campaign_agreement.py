"""Contour-agreement campaigns as Dask tasks: exact agreement, a shifted model, determinism, resume, bad inputs.

One 2-worker cluster of processes serves the module; the exact toy density keeps the scans
cheap (21 × 21 grids around each truth). With the same density as model and reference both
scans are the same computation, so the regions agree exactly; a model that evaluates the toy
at ``θ + δ`` has its MLE exactly ``δ`` away, whatever the dataset.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

distributed = pytest.importorskip("distributed")
pq = pytest.importorskip("pyarrow.parquet")

from gmmpyro.campaigns import AgreementResult, contour_agreement  # noqa: E402
from gmmpyro.campaigns._runner import local_client  # noqa: E402
from gmmpyro.toy import ToyModel  # noqa: E402

TRUTHS = [[0.8, -0.5], [0.0, 0.5]]
N_DATASETS, N_EVENTS = 3, 200
GRID = {"cx": (-1.5, 1.5, 21), "cy": (-1.5, 1.5, 21)}
OPTIONS = {"grid": GRID, "window": 0.6, "n_starts": 2, "progress": False}
SHIFT = 0.3  # of cx in the perturbed model: three times the 68 % region's radius at 200 events


class ShiftedToy(ToyModel):
    """The toy density read at ``θ + shift``: its MLE lies ``shift`` below the toy's."""

    def __init__(self, shift: tuple[float, ...]) -> None:
        super().__init__()
        self.shift = tuple(shift)

    def __repr__(self) -> str:
        return f"ShiftedToy(shift={self.shift})"

    def _log_prob(self, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        return super()._log_prob(x, theta + torch.tensor(self.shift, dtype=theta.dtype, device=theta.device))


@pytest.fixture(scope="module")
def client():
    with local_client(2) as c:
        yield c


@pytest.fixture(scope="module")
def stored(client, tmp_path_factory):
    """The toy against itself, 3 datasets per truth on 2 workers, stored two datasets per file."""
    out = tmp_path_factory.mktemp("agreement") / "same"
    toy = ToyModel()
    result = contour_agreement(toy, toy, TRUTHS, N_DATASETS, N_EVENTS, client=client, out=out, batch_size=2, **OPTIONS)
    return result, out


def test_the_same_density_agrees_exactly(stored):
    same, _ = stored
    assert isinstance(same, AgreementResult) and same.params == ("cx", "cy")
    assert same.datasets["toy"].shape == (len(TRUTHS) * N_DATASETS,)
    np.testing.assert_array_equal(same.n_done, [N_DATASETS, N_DATASETS])
    np.testing.assert_array_equal(same.n_failed, [0, 0])
    np.testing.assert_array_equal(same.n_clipped, [0, 0])
    # one computation twice: the regions and MLEs are identical, for every dataset
    np.testing.assert_array_equal(same.datasets["iou_68"], 1.0)
    np.testing.assert_array_equal(same.datasets["iou_95"], 1.0)
    np.testing.assert_array_equal(same.datasets["mle_distance"], 0.0)
    np.testing.assert_array_equal(same.iou_68, [1.0, 1.0])
    np.testing.assert_array_equal(same.mle_distance_error, [0.0, 0.0])
    # sorted by point, then dataset; dataset j of point p is task j·P + p
    np.testing.assert_array_equal(same.datasets["point"], [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(same.datasets["toy"], [0, 2, 4, 1, 3, 5])
    assert len(set(same.datasets["seed"].tolist())) == 6  # every dataset its own events
    # the datasets scatter around their truths: the reference's MLE is within 0.3 of it (~3σ at 200 events)
    mle = np.stack([same.datasets["mle_reference_cx"], same.datasets["mle_reference_cy"]], -1)
    assert np.all(np.abs(mle - np.repeat(TRUTHS, N_DATASETS, axis=0)) < 0.3)
    assert not np.allclose(mle[0], mle[1])
    frame = same.to_pandas()
    assert list(frame.columns)[:4] == ["toy", "point", "dataset", "seed"] and len(frame) == 6
    text = repr(same)
    assert text.startswith("AgreementResult of (cx, cy): 3 pseudo-datasets of 200 events") and "1.000 ± 0.000" in text
    assert same.summary()["points"][1]["truth"] == {"cx": 0.0, "cy": 0.5}
    assert not same.iou_68.flags.writeable


def test_a_shifted_model_disagrees(client, stored):
    same, _ = stored
    shifted = contour_agreement(ShiftedToy((SHIFT, 0.0)), ToyModel(), TRUTHS, N_DATASETS, N_EVENTS, client=client,
                                **OPTIONS)  # fmt: skip
    assert shifted.n_failed.sum() == 0
    # the same datasets (same seeds, same reference) ...
    np.testing.assert_array_equal(shifted.datasets["seed"], same.datasets["seed"])
    np.testing.assert_array_equal(shifted.datasets["mle_reference_cx"], same.datasets["mle_reference_cx"])
    # ... and the model's MLE exactly the shift away (fits converge to 1e-6 in -ln L: ~1e-3 in cx)
    np.testing.assert_allclose(shifted.datasets["mle_distance"], SHIFT, atol=2e-3)
    model_cx, reference_cx = shifted.datasets["mle_model_cx"], shifted.datasets["mle_reference_cx"]
    np.testing.assert_allclose(model_cx, reference_cx - SHIFT, atol=2e-3)
    # 68 % regions of radius ~0.1 (at cx = 0.8; wider at the cusp cx = 0) three radii apart overlap little
    assert np.all(shifted.datasets["iou_68"] < 0.4) and np.all(shifted.datasets["iou_95"] < 0.7)
    assert np.all(shifted.iou_68 + 3 * shifted.iou_68_error < 0.5)


def test_one_worker_and_other_batches_give_the_same_rows(stored):
    same, _ = stored
    # one worker thread in this process, one dataset per task, against 2 worker processes with 2 per task
    with (
        distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as c,
        distributed.Client(c) as one,
    ):
        again = contour_agreement(ToyModel(), ToyModel(), TRUTHS, N_DATASETS, N_EVENTS, client=one, batch_size=1,
                                  **OPTIONS)  # fmt: skip
    for column in ("seed", "mle_reference_cx", "mle_model_cy", "q_truth_reference", "iou_95"):
        np.testing.assert_array_equal(again.datasets[column], same.datasets[column])  # bit for bit


def test_resume_runs_each_dataset_once(client, stored):
    same, out = stored
    assert sorted(p.name for p in out.iterdir()) == [
        "toys-0000000-0000001.parquet", "toys-0000002-0000003.parquet", "toys-0000004-0000005.parquet",
    ]  # fmt: skip
    # an interruption that lost the batch of tasks 2-3 (dataset 1 of both points); then a larger campaign
    (out / "toys-0000002-0000003.parquet").unlink()
    toy = ToyModel()
    more = contour_agreement(toy, toy, TRUTHS, N_DATASETS + 1, N_EVENTS, client=client, out=out, **OPTIONS)
    assert sorted(pq.read_table(out).column("toy").to_pylist()) == list(range(len(TRUTHS) * (N_DATASETS + 1)))
    np.testing.assert_array_equal(more.n_done, [N_DATASETS + 1] * 2)
    first = more.datasets["dataset"] < N_DATASETS
    for column in ("toy", "seed", "mle_reference_cy", "q_truth_model"):
        np.testing.assert_array_equal(more.datasets[column][first], same.datasets[column])
    # stored: a smaller campaign reads its datasets and starts no cluster
    again = contour_agreement(toy, toy, TRUTHS, N_DATASETS, N_EVENTS, out=out, **OPTIONS)
    np.testing.assert_array_equal(again.datasets["mle_model_cx"], same.datasets["mle_model_cx"])
    with pytest.raises(ValueError, match=r"toys-0000000-0000001\.parquet.*window: stored \[0\.6, 0\.6\], now \[0\.5"):
        contour_agreement(toy, toy, TRUTHS, N_DATASETS, N_EVENTS, out=out, **{**OPTIONS, "window": 0.5})
    with pytest.raises(ValueError, match="reference: stored"):
        contour_agreement(toy, ShiftedToy((0.0, 0.0)), TRUTHS, N_DATASETS, N_EVENTS, out=out, **OPTIONS)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ({"n_datasets": 0}, "n_datasets must be an integer >= 1"),
        ({"truths": [[0.8, -0.5, 0.1]]}, r"truths must have shape \(P, 2\)"),
        ({"truths": [[0.8, 2.0]]}, r"truths\[0\]: cy = 2 lies outside the model's theta_bounds"),
        ({"profile": ["nu"]}, r"profile: unknown parameter\(s\) \['nu'\]"),
        ({"fix": ["cx"]}, r"fix: parameter\(s\) \['cx'\] are scanned"),
        ({"window": -0.1}, "window must be positive"),
        ({"grid": {"cx": (-1.0, 1.0, 11)}}, "grid must map exactly two parameter names"),
        ({"grid": {"cx": [0.0, -1.0], "cy": (-1.0, 1.0, 5)}}, "grid 'cx': the axis must hold"),
        ({"reference": ToyModel(x3_shift=0.3)}, r"reference parameters \('cx', 'cy', 'nu'\) differ"),
        ({"out": "/nonexistent/dir/a.parquet"}, "directory of /nonexistent/dir/a.parquet does not exist"),
    ],
)
def test_bad_inputs(args, match):
    kwargs = {"reference": ToyModel(), "truths": TRUTHS, "n_datasets": 2, "n_events": 10, "progress": False, **args}
    with pytest.raises(ValueError, match=match):
        contour_agreement(ToyModel(), kwargs.pop("reference"), kwargs.pop("truths"), kwargs.pop("n_datasets"),
                          kwargs.pop("n_events"), **kwargs)  # fmt: skip
