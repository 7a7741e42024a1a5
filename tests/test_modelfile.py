"""Model files: round trips, files of an earlier version, and clear errors for bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import DATA, trained_toy_model
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from gmmpyro import DensityModel

REFERENCE = json.loads((DATA / "reference_values.json").read_text())


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_files_of_format_version_1_load_to_the_same_density(name):
    ref = REFERENCE[name]
    model = DensityModel.load(DATA / name)
    assert str(model.dtype) == ref["dtype"]
    x = torch.tensor(ref["events"], dtype=model.dtype)
    theta = torch.tensor(ref["theta"], dtype=model.dtype)
    # same arithmetic on the same weights: equal up to rounding of the dtype (reduction order may differ)
    tol = {"rtol": 1e-10, "atol": 1e-10} if model.dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-4}
    expected = torch.tensor(ref["log_prob"], dtype=model.dtype)  # G N
    with torch.no_grad():
        torch.testing.assert_close(model.log_prob(x, theta[:, None, :]), expected, **tol)
    sample = model.sample(3, theta[0], seed=0)
    torch.testing.assert_close(sample, torch.tensor(ref["sample_seed0"], dtype=model.dtype), **tol)


def test_save_load_round_trip_is_exact(tmp_path):
    model = trained_toy_model()
    model.save(tmp_path / "toy.gmm")
    loaded = DensityModel.load(tmp_path / "toy.gmm")
    theta = torch.tensor([0.1, 0.2], dtype=torch.float64)
    x = model.sample(100, theta, seed=1)
    with torch.no_grad():
        torch.testing.assert_close(loaded.log_prob(x, theta), model.log_prob(x, theta), rtol=0, atol=0)
    torch.testing.assert_close(loaded.sample(50, theta, seed=3), model.sample(50, theta, seed=3), rtol=0, atol=0)
    assert loaded.history.n_epochs == model.history.n_epochs
    assert loaded.order == model.order and loaded.params == model.params


def _rewrite(src: Path, dst: Path, *, tensors=None, **metadata) -> Path:
    meta = safe_open(str(src), "pt").metadata()
    save_file(load_file(src) if tensors is None else tensors, dst, metadata={**meta, **metadata})
    return dst


def test_bad_files_give_errors_naming_the_file_and_the_problem(tmp_path):
    good = DATA / "toy_small_v1.gmm"
    config = json.loads(safe_open(str(good), "pt").metadata()["config"])
    cases = {
        "v9.gmm": ({"format_version": "9"}, "format version 9"),
        "json.gmm": ({"config": "{not json"}, "not valid JSON"),
        "list.gmm": ({"config": "[]"}, "must be a JSON object"),
        "missing.gmm": ({"config": json.dumps({k: v for k, v in config.items() if k != "order"})}, "'order'"),
        "dtype.gmm": ({"config": json.dumps({**config, "dtype": "nope"})}, "inconsistent"),
        "projection.gmm": ({"config": json.dumps({**config, "projection": {}})}, "projection or history"),
        "history.gmm": ({"config": json.dumps({**config, "history": {"x": 1}})}, "projection or history"),
        "float32.gmm": ({"config": json.dumps({**config, "dtype": "float32"})}, "are not float32"),
    }
    for name, (metadata, message) in cases.items():
        path = _rewrite(good, tmp_path / name, **metadata)
        with pytest.raises(ValueError, match=message) as info:
            DensityModel.load(path)
        assert name in str(info.value)
    save_file({"w": torch.zeros(2)}, tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="not a gmmpyro DensityModel"):
        DensityModel.load(tmp_path / "other.safetensors")
    (tmp_path / "junk.gmm").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a readable gmmpyro model"):
        DensityModel.load(tmp_path / "junk.gmm")
    tensors = load_file(good)
    tensors["model.networks.0.theta_branch.weight"] = torch.zeros(3, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="do not match the architecture"):
        DensityModel.load(_rewrite(good, tmp_path / "bad.gmm", tensors=tensors))
    tensors = load_file(good)
    tensors["model.theta_low"] = torch.full_like(tensors["model.theta_low"], float("nan"))
    with pytest.raises(ValueError, match="parameter range must be finite"):
        DensityModel.load(_rewrite(good, tmp_path / "nan_range.gmm", tensors=tensors))


def test_saving_into_a_missing_directory_fails_before_writing(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        trained_toy_model().save(tmp_path / "missing" / "m.gmm")
    assert not (tmp_path / "missing").exists()


def test_an_interrupted_save_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    import gmmpyro.modelfile

    model = trained_toy_model()
    target = tmp_path / "m.gmm"
    model.save(target)
    before = target.read_bytes()

    def interrupted(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(gmmpyro.modelfile, "save_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        model.save(target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.gmm"]


@pytest.mark.parametrize("design", ["lowrank", "amplitudes"])
def test_low_rank_designs_round_trip(tmp_path, design):
    from dataclasses import replace

    from helpers import SMALL_NETWORK

    from gmmpyro import TrainingConfig
    from gmmpyro.toy import ToyModel

    toy = ToyModel()
    x, theta = toy.grid_dataset(100, grid=[[-1.0, -1.0], [0.0, 0.0], [1.0, 1.0]], seed=0)
    torch.manual_seed(0)
    model = DensityModel(toy.observables, toy.params, config=replace(SMALL_NETWORK, design=design, rank=3))
    model.fit(x, theta, config=TrainingConfig(max_epochs=1), progress=False)
    model.save(tmp_path / "lowrank.gmm")
    loaded = DensityModel.load(tmp_path / "lowrank.gmm")
    assert loaded.config == model.config and loaded.config.design == design
    grid = torch.tensor([[0.2, -0.3], [0.9, 0.1]]).unsqueeze(-2)  # G 1 k
    with torch.no_grad():
        torch.testing.assert_close(loaded.prepare(x[:50]).log_prob(grid.squeeze(-2)), model.log_prob(x[:50], grid))
    torch.testing.assert_close(loaded.sample(20, grid[0, 0], seed=2), model.sample(20, grid[0, 0], seed=2))
