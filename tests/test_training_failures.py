"""Training that cannot succeed fails loudly, and a checkpoint resumes only the run it belongs to."""

import json
from dataclasses import replace

import pytest
import torch
from helpers import SMALL_NETWORK
from safetensors import safe_open
from safetensors.torch import save_file

from gmmpyro import DensityModel, NetworkConfig, TrainingConfig, TrainingError
from gmmpyro.toy import ToyModel
from gmmpyro.training import _training_weights, split_indices

TOY = ToyModel()
GRID = [[-1.0, -1.0], [0.0, 0.0], [1.0, 1.0]]
ONE_EPOCH = TrainingConfig(batch_size=64, max_epochs=1)


@pytest.fixture(scope="module")
def data():
    """120 toy events on a 3-point grid, θ in float64."""
    x, theta = TOY.grid_dataset(40, grid=GRID, seed=0)
    return x.double(), theta.double()


def fresh(network: NetworkConfig = SMALL_NETWORK, dtype: torch.dtype = torch.float32) -> DensityModel:
    torch.manual_seed(0)
    return DensityModel(TOY.observables, ["cx", "cy"], config=network, dtype=dtype)


def weights_finite(model: DensityModel) -> bool:
    return all(torch.isfinite(p).all() for p in model.networks.parameters())


def nan_setting(name: str) -> NetworkConfig:
    """``SMALL_NETWORK`` with a NaN constant, as if it had got past ``NetworkConfig.validate``."""
    config = replace(SMALL_NETWORK)
    object.__setattr__(config, name, float("nan"))
    return config


def cy_collapsed(x, theta):
    """``cy`` in [0.3, 0.30000001]: two values in float64, one in float32."""
    theta = theta.clone()
    theta[:, 1] = 0.3 + 1e-8 * (theta[:, 1] > 0).double()
    return x, theta, None


def cy_beyond_float32(x, theta):
    theta = theta.clone()
    theta[:, 1] *= 1e39
    return x, theta, None


def validation_weightless(x, theta):
    _, val_index = split_indices(len(x), ONE_EPOCH.validation_fraction, ONE_EPOCH.seed)
    weights = torch.ones(len(x), dtype=torch.float64)
    weights[val_index] = 0.0
    return x, theta, weights


INPUT_ERRORS = {
    "cy collapses in float32": (cy_collapsed, r"'cy' spans \[0.3, 0.30000001\].*single value .* torch.float32"),
    "cy infinite in float32": (cy_beyond_float32, r"'cy' spans \[-1e\+39, 1e\+39\].*\[-inf, inf\]"),
    "validation events weigh 0": (validation_weightless, "all 24 validation events have zero weight"),
}


@pytest.mark.parametrize("case", sorted(INPUT_ERRORS))
def test_inputs_the_dtype_cannot_hold_are_refused_before_training(data, case):
    make, message = INPUT_ERRORS[case]
    model = fresh()
    with pytest.raises(ValueError, match=message):
        model.fit(*make(*data), config=ONE_EPOCH, progress=False)
    assert not model.is_fitted and model.history is None


CONFIG_ERRORS = {
    "learning_rate": (float("inf"), "learning_rate must be finite and > 0, got inf"),
    "tolerance": (float("nan"), "tolerance must be finite and >= 0, got nan"),
    "lr_factor": (float("nan"), r"lr_factor must lie in \(0, 1\], got nan"),
    "batch_size": (64.0, "batch_size must be an integer, got 64.0"),
    "stop_patience": (0, "stop_patience must be >= 1, got 0"),
}


@pytest.mark.parametrize("field", sorted(CONFIG_ERRORS))
def test_training_config_names_the_bad_field(field):
    value, message = CONFIG_ERRORS[field]
    with pytest.raises(ValueError, match=f"TrainingConfig.{message}"):
        TrainingConfig(**{field: value})


def poison_x1_after_first_epoch(model):
    """A callback that makes the network of ``x1`` NaN after epoch 0, so epoch 1 diverges."""

    def callback(epoch, history):
        with torch.no_grad():
            next(model.networks[1].parameters()).fill_(float("nan"))

    return callback


DIVERGENCES = {
    "huge learning rate": (
        SMALL_NETWORK,
        replace(ONE_EPOCH, learning_rate=1e30),
        None,
        r"epoch 0: the training loss is not finite .*'x0'.*learning rate too large for these data \(1e\+30\)"
        r".*keeps its initial weights",
    ),
    "huge learning rate, one step per epoch": (
        SMALL_NETWORK,
        replace(ONE_EPOCH, learning_rate=1e30, batch_size=500),
        None,
        r"epoch 0: the validation loss is not finite .*learning rate too large.*keeps its initial weights",
    ),
    "NaN s_sigma": (
        nan_setting("s_sigma"),
        ONE_EPOCH,
        None,
        r"epoch 0: .*non-finite network settings \(NetworkConfig s_sigma=nan\).*keeps its initial weights",
    ),
    "network turns NaN": (
        SMALL_NETWORK,
        replace(ONE_EPOCH, max_epochs=3),
        poison_x1_after_first_epoch,
        r"epoch 1: the training loss is not finite for the network of 'x1' \(nan\)\. "
        r"Likely causes: the network weights are no longer finite.*"
        r"best finite weights so far: 'x0' those of epoch 0, 'x1' those of epoch 0",
    ),
}


@pytest.mark.parametrize("case", sorted(DIVERGENCES))
def test_divergence_raises_and_keeps_finite_weights(data, case):
    network, config, make_callback, message = DIVERGENCES[case]
    model = fresh(network)
    callback = make_callback(model) if make_callback else None
    with pytest.raises(TrainingError, match=message):
        model.fit(*data, config=config, progress=False, callback=callback)
    assert weights_finite(model)
    assert model.history.n_epochs == (1 if callback else 0)


@pytest.mark.parametrize("scale", [1e-50, 1e39])
def test_weights_beyond_float32_train_like_equal_weights(data, scale):
    # the loss depends on the weights' ratios only
    reference = fresh().fit(*data, config=ONE_EPOCH, progress=False)
    weights = torch.full((len(data[0]),), scale, dtype=torch.float64)
    history = fresh().fit(*data, weights, config=ONE_EPOCH, progress=False)
    assert history.val_loss == reference.val_loss


def test_weights_too_unequal_for_the_dtype_are_refused():
    weights = torch.zeros(70_000, dtype=torch.float64)
    weights[0] = 1.0  # scaled to mean 1 it is 70000, beyond float16's 65504
    with pytest.raises(ValueError, match=r"the weights, scaled to mean 1, reach inf in torch\.float16"):
        _training_weights(weights, torch.float16)


def test_batches_of_zero_weight_are_skipped(data):
    weights = torch.zeros(len(data[0]), dtype=torch.float64)
    weights[::4] = 1.0
    model = fresh()
    history = model.fit(*data, weights, config=replace(ONE_EPOCH, batch_size=2), progress=False)
    assert torch.isfinite(torch.tensor(history.train_loss)).all() and weights_finite(model)


# ------------------------------------------------------------------------------ checkpoints


@pytest.fixture
def checkpoint(tmp_path, data):
    """A directory holding the checkpoint of one epoch on ``data`` (float32, default reference)."""
    fresh().fit(*data, config=ONE_EPOCH, progress=False, checkpoint_dir=tmp_path)
    return tmp_path


def shifted_x(x, theta):
    x = x.clone()
    x[0, 0] += 1e-6
    return {"x": x, "theta": theta}


def reweighted(x, theta):
    weights = torch.ones(len(x), dtype=torch.float64)
    weights[0] = 2.0
    return {"x": x, "theta": theta, "weights": weights}


def same(x, theta):
    return {"x": x, "theta": theta}


MISMATCHES = {  # part: (inputs, TrainingConfig changes, model dtype, the part's description)
    "reference": (
        lambda x, theta: {"x": x, "theta": theta, "reference": [1.0, 1.0]},
        {},
        torch.float32,
        r"the reference events that define the projection \(reference=\)",
    ),
    "x": (shifted_x, {}, torch.float32, "the training events x"),
    "weights": (reweighted, {}, torch.float32, "the event weights"),
    "network": (same, {}, torch.float64, r"the network settings \(NetworkConfig, dtype and ensemble size\)"),
    "training": (
        same,
        {"learning_rate": 2e-3},
        torch.float32,
        r"the training settings \(TrainingConfig other than max_epochs\)",
    ),
}


@pytest.mark.parametrize("part", sorted(MISMATCHES))
def test_resuming_another_run_names_what_differs(checkpoint, data, part):
    make, changes, dtype, message = MISMATCHES[part]
    model = fresh(dtype=dtype)
    # that part, and only it, is named
    with pytest.raises(TrainingError, match=rf"belongs to other data or settings \({message} differ\);"):
        model.fit(**make(*data), config=replace(ONE_EPOCH, **changes), progress=False, checkpoint_dir=checkpoint)
    assert not model.is_fitted


def test_the_same_run_resumes_after_its_last_epoch(checkpoint, data):
    epochs = []
    history = fresh().fit(
        *data,
        config=replace(ONE_EPOCH, max_epochs=2),
        progress=False,
        checkpoint_dir=checkpoint,
        callback=lambda epoch, _: epochs.append(epoch),
    )
    assert epochs == [1] and history.n_epochs == 2


def rewrite(directory, edit) -> None:
    """Rewrite the checkpoint in ``directory`` after ``edit(header, tensors)``."""
    path = directory / "checkpoint.safetensors"
    with safe_open(path, framework="pt") as handle:
        header = dict(handle.metadata())
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    edit(header, tensors)
    save_file(tensors, path, metadata=header)


def as_version_1(header, tensors):
    state = json.loads(header["state"])
    state["fingerprint"] = "0" * 64
    del state["parts"]
    header.update(format_version="1", state=json.dumps(state))


def with_state(**changes):
    def edit(header, tensors):
        header["state"] = json.dumps({**json.loads(header["state"]), **changes})

    return edit


def truncated_json(header, tensors):
    header["state"] = header["state"][:-1]


def without_a_best_tensor(header, tensors):
    del tensors[next(key for key in tensors if key.startswith("best.2."))]


BROKEN = {
    "format version 1": (as_version_1, "checkpoint format version 1, this gmmpyro reads version 2"),
    "invalid JSON": (truncated_json, "its state is not valid JSON"),
    "negative epoch": (with_state(epoch=-1), "'epoch' is not an integer >= 0"),
    "short lr list": (with_state(lr=[1e-3]), "'lr' is not a list of 4 numbers"),
    "foreign history": (with_state(history={"names": []}), "'history' does not have the fields"),
    "missing tensor": (without_a_best_tensor, r"its tensors best\.2\.\* do not fit the networks"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_unreadable_or_old_checkpoints_are_refused(checkpoint, data, case):
    edit, message = BROKEN[case]
    rewrite(checkpoint, edit)
    model = fresh()
    with pytest.raises(TrainingError, match=f"{message}.*delete .* to start afresh"):
        model.fit(*data, config=ONE_EPOCH, progress=False, checkpoint_dir=checkpoint)
    assert not model.is_fitted


def test_a_file_that_is_not_safetensors_is_refused(tmp_path, data):
    (tmp_path / "checkpoint.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(TrainingError, match="not a readable safetensors file"):
        fresh().fit(*data, config=ONE_EPOCH, progress=False, checkpoint_dir=tmp_path)
