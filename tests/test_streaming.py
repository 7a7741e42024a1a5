"""Training on Parquet files read window by window (gmmpyro.streaming, gmmpyro.training_data)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gmmpyro
from gmmpyro.observables import Observable
from gmmpyro.streaming import ParquetEvents, StreamedEvents
from gmmpyro.toy import ToyModel
from gmmpyro.training_data import WindowedEvents

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

NETWORK = gmmpyro.NetworkConfig(n_gauss=4, A1=16, B1=16, B2=8, C=2, D=2)
CONFIG = gmmpyro.TrainingConfig(batch_size=256, max_epochs=2)


def _write(path, columns: dict, row_group_size: int = 1000) -> None:
    pq.write_table(pa.table({name: np.asarray(values) for name, values in columns.items()}), path,
                   row_group_size=row_group_size)  # fmt: skip


@pytest.fixture(scope="module")
def toy_events():
    toy = ToyModel()
    x, theta = toy.grid_dataset(60, seed=1)
    weights = 0.5 + torch.rand(x.shape[0], generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    return toy, x, theta, weights


def _columns(x, theta, weights=None) -> dict:
    columns = {f"x{i}": x[:, i].numpy() for i in range(4)} | {"cx": theta[:, 0].numpy(), "cy": theta[:, 1].numpy()}
    return columns | ({"w": weights.numpy()} if weights is not None else {})


def _trained(toy, data, *args, config=CONFIG, **kwargs):
    torch.manual_seed(0)
    model = gmmpyro.DensityModel(toy.observables, toy.params, config=NETWORK)
    model.fit(data, *args, config=config, progress=False, **kwargs)
    return model


def test_one_window_is_in_memory_training_exactly(toy_events, tmp_path):
    toy, x, theta, weights = toy_events
    _write(tmp_path / "events.parquet", _columns(x, theta, weights))
    streamed = _trained(toy, ParquetEvents(tmp_path / "events.parquet", weights="w"))
    in_memory = _trained(toy, x, theta, weights)
    for a, b in zip(streamed.networks.state_dict().values(), in_memory.networks.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert streamed.history.val_loss == in_memory.history.val_loss
    torch.testing.assert_close(streamed.projection.forward(x), in_memory.projection.forward(x), rtol=0, atol=0)


def test_windows_cover_every_event_once_per_epoch_within_the_memory_bound(tmp_path):
    # the observable "row" holds each event's row number, so batches show which events they hold
    n = 5_300
    rows = np.arange(n, dtype=np.float64)
    folder = tmp_path / "shards"
    folder.mkdir()
    for i, part in enumerate(np.array_split(rows, 3)):
        _write(folder / f"part{i}.parquet", {"row": part, "c": part % 7}, row_group_size=400)
    stream = StreamedEvents(ParquetEvents(folder, window_rows=1000), [Observable("row")], ["c"])
    assert len(stream.windows) > 5 and max(stream.window_sizes()) <= 1000 and sum(stream.window_sizes()) == n
    rows_only = lambda x, theta, w, score: [x[:, 0]]  # noqa: E731
    events = WindowedEvents(stream, rows_only, validation_fraction=0.2, seed=3, batch_size=128)
    seen = [table[0][index] for epoch in (0, 1) for table, index in events.training_batches(epoch)]
    batches_per_epoch = len(seen) // 2
    epochs = [torch.cat(seen[:batches_per_epoch]), torch.cat(seen[batches_per_epoch:])]
    validation = torch.cat([table[0][index] for table, index in events.validation_chunks()])
    assert all(len(batch) == 128 for batch in seen[: batches_per_epoch - 1])  # batches run on across windows
    for training in epochs:
        assert torch.equal(torch.sort(torch.cat([training, validation])).values, torch.from_numpy(rows))
    assert not torch.equal(epochs[0], epochs[1])  # a new order every epoch
    assert abs(len(validation) / n - 0.2) < 0.01


def test_several_windows_train_and_resume_from_a_checkpoint(toy_events, tmp_path):
    toy, x, theta, _ = toy_events
    _write(tmp_path / "events.parquet", _columns(x, theta), row_group_size=500)
    events = ParquetEvents(tmp_path / "events.parquet", window_rows=1000)
    config = gmmpyro.TrainingConfig(batch_size=256, max_epochs=3)
    full = _trained(toy, events, config=config)
    assert np.isfinite(full.history.val_loss).all() and full.history.n_epochs == 3
    stopped = _trained(toy, events, checkpoint_dir=tmp_path / "run", callback=lambda epoch, history: epoch == 1)
    assert stopped.history.n_epochs == 2
    resumed = _trained(toy, events, config=config, checkpoint_dir=tmp_path / "run")
    for a, b in zip(resumed.networks.state_dict().values(), full.networks.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_off_grid_theta_fits_the_projection_on_a_subset(toy_events, tmp_path):
    toy, x, _, _ = toy_events
    theta = torch.rand(x.shape[0], 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2 - 1
    _write(tmp_path / "events.parquet", _columns(x, theta))
    stream = StreamedEvents(ParquetEvents(tmp_path / "events.parquet", reference_rows=500), toy.observables, toy.params)
    # each event is kept with probability 500 / N: the count is binomial, sd ≈ 21
    assert stream.reference_point is None and abs(len(stream.reference_x) - 500) < 100


def test_bad_files_get_errors_naming_the_file(toy_events, tmp_path):
    toy, x, theta, _ = toy_events
    columns = _columns(x, theta)

    def error(files: dict, **kwargs) -> str:
        folder = tmp_path / f"case{len(list(tmp_path.iterdir()))}"
        folder.mkdir()
        for name, content in files.items():
            _write(folder / name, content)
        with pytest.raises(ValueError) as caught:
            _trained(toy, ParquetEvents(folder, **kwargs), config=CONFIG)
        return str(caught.value)

    message = error({"a.parquet": columns, "b.parquet": {k: v for k, v in columns.items() if k != "x2"}})
    assert "b.parquet" in message and "'x2'" in message
    message = error({"a.parquet": columns, "b.parquet": {k: v[:0] for k, v in columns.items()}})
    assert "b.parquet" in message and "no events" in message
    message = error({"a.parquet": columns, "b.parquet": columns | {"cy": np.array(["1"] * len(columns["cy"]))}})
    assert "b.parquet" in message and "'cy'" in message and "not numbers" in message
    outside = columns | {"x0": np.where(np.arange(len(columns["x0"])) == 1500, 1e6, columns["x0"])}
    message = error({"a.parquet": outside})
    assert "a.parquet, row group 1" in message and "x0" in message
    assert "'w'" in error({"a.parquet": columns}, weights="w")
    with pytest.raises(ValueError, match="nothing-here: no such file or folder"):
        _trained(toy, ParquetEvents(tmp_path / "nothing-here"), config=CONFIG)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"no \.parquet files in this folder"):
        _trained(toy, ParquetEvents(tmp_path / "empty"), config=CONFIG)
    _write(tmp_path / "good.parquet", columns)
    with pytest.raises(ValueError, match="omit theta and weights"):
        _trained(toy, ParquetEvents(tmp_path / "good.parquet"), theta, config=CONFIG)
    with pytest.raises(ValueError, match="not a mask"):
        _trained(toy, ParquetEvents(tmp_path / "good.parquet"), reference=torch.ones(len(x), dtype=torch.bool))
    with pytest.raises(ValueError, match="window_rows"):
        ParquetEvents(tmp_path, window_rows=0)


def test_train_command_streams_a_folder_and_a_file(toy_events, tmp_path):
    from gmmpyro.cli import main

    _, x, theta, weights = toy_events
    folder = tmp_path / "events"
    folder.mkdir()
    columns = _columns(x, theta, weights)
    half = len(x) // 2
    _write(folder / "a.parquet", {k: v[:half] for k, v in columns.items()})
    _write(folder / "b.parquet", {k: v[half:] for k, v in columns.items()})
    command = ["--observables", "x0:100:800", "x1:100:800", "x2:-pi:pi", "x3", "--params", "cx", "cy",
               "--weights", "w", "--epochs", "1", "--quiet"]  # fmt: skip
    main(["train", str(folder), *command, "--out", str(tmp_path / "folder.gmm")])
    main(["train", str(folder / "a.parquet"), "--window-rows", "1000", *command, "--out", str(tmp_path / "file.gmm")])
    for name in ("folder.gmm", "file.gmm"):
        model = gmmpyro.DensityModel.load(tmp_path / name)
        assert model.history.n_epochs == 1 and np.isfinite(model.history.val_loss[0]).all()
