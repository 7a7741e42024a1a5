"""``DensityModel.compile()``: the compiled θ paths (``"amplitudes"``, ``"film"``) against the uncompiled ones."""

import copy
import math
import os
import pickle
import re
import shutil
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from gmmpyro import DensityModel, NetworkConfig, Observable, OutOfRangeWarning, TrainingConfig
from gmmpyro.compiled_amplitudes import AmplitudeKernels
from gmmpyro.compiled_film import FilmKernels
from gmmpyro.exceptions import results_checked_by_caller
from gmmpyro.toy import ToyModel

AMPLITUDES = NetworkConfig(
    n_gauss=6, A1=16, B1=16, B2=4, C=1, D=2, s_f=0.1, s_mu=0.1, s_sigma=0.1, design="amplitudes", rank=4
)
CONFIGS = {"amplitudes": AMPLITUDES, "film": replace(AMPLITUDES, design="film", film_width=8)}
KERNELS = {"amplitudes": AmplitudeKernels, "film": FilmKernels}
UNCOMPILED_NODE = {"amplitudes": "_AmplitudesLogProbBackward", "film": "AddBackward0"}
QUICK = TrainingConfig(batch_size=256, learning_rate=3e-3, max_epochs=1)
# Inductor compiles C++ on the CPU; without a compiler these tests cannot run (the error is tested below)
needs_compiler = pytest.mark.skipif(
    not any(shutil.which(c) for c in (os.environ.get("CXX", "g++"), "g++", "clang++")),
    reason="torch.compile needs a C++ compiler on the CPU",
)


def toy_model(design="amplitudes", ensemble=1):
    toy = ToyModel()
    x, theta = toy.grid_dataset(100, grid=[[-1.0, -1.0], [-1.0, 1.0], [0.0, 0.0], [1.0, -1.0], [1.0, 1.0]], seed=0)
    torch.manual_seed(0)
    model = DensityModel(toy.observables, toy.params, config=CONFIGS[design], ensemble=ensemble, dtype=torch.float64)
    model.fit(x, theta, config=QUICK, progress=False)
    return model, x


def compiled_copy(model):
    twin = copy.deepcopy(model)
    twin.compile()
    return twin


def path_node(prepared, theta):
    """The gradient node of the first member's latent log density: which path scored ``theta (B, k)``."""
    model = prepared.model
    return prepared._stacked[0].log_prob(model.scale_theta(theta.to(model.dtype))).grad_fn.name()


@pytest.fixture(scope="module", params=list(CONFIGS))
def pair(request):
    model, x = toy_model(request.param)
    return model, compiled_copy(model), x[:300]


def move_first_factor(model, case):
    """Move the first factor's end Gaussians outside the latent range, or make one 10⁶ times wider than it.

    The amplitudes model's move by 2, film's by 0.5: its narrow last Gaussian moved by 2 would sit
    14 widths above the range, its normalised peak above every event's sum by more than the compiled
    expression's precision (a case for the uncompiled path).
    """
    config, first = model.config, model.networks[0]
    n_gauss = config.n_gauss
    shift = 2.0 if config.design == "amplitudes" else 0.5
    # the raw outputs' constant term: the amplitudes event constant's row `rank` (θ's 1), film's head bias
    constant = first.event_constant[config.rank] if config.design == "amplitudes" else first.head.bias
    with torch.no_grad():
        if case == "means outside":
            constant[n_gauss] -= shift / config.s_mu
            constant[2 * n_gauss - 1] += shift / config.s_mu
        else:
            constant[2 * n_gauss + 3] += (math.log(1e7) - first.log_width0) / config.s_sigma


@needs_compiler
@pytest.mark.parametrize("case", ["trained", "means outside", "one wide"])
def test_compiled_values_and_gradients_equal_the_uncompiled_path(pair, case):
    """float64, three θ at once, per-event weights on the values (so the per-event Jacobian is tested, not a sum).

    "means outside": the first factor's end Gaussians centred 2 outside the latent range (an
    interval to reflect, within the compiled expression); "one wide": a component 10⁶ times
    wider than the range, outside the expression's case, where the uncompiled path takes over
    (checked by the gradient's node).
    """
    model, compiled, events = pair
    design = model.config.design
    if case != "trained":
        model = copy.deepcopy(model)
        move_first_factor(model, case)
        compiled = compiled_copy(model)
    grid = torch.tensor([[0.2, -0.3], [-0.9, 0.6], [0.7, 0.95]], dtype=torch.float64, requires_grad=True)
    weights = torch.rand(3, len(events), dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    prepared = [model.prepare(events), compiled.prepare(events)]
    values = [p.log_prob(grid) for p in prepared]
    expected_node = UNCOMPILED_NODE[design] if case == "one wide" else "_GivenJacobianBackward"
    assert path_node(prepared[1], grid) == expected_node
    torch.testing.assert_close(values[1], values[0], rtol=1e-12, atol=1e-10)
    gradients = [torch.autograd.grad((v * weights).sum(), grid)[0] for v in values]
    torch.testing.assert_close(gradients[1], gradients[0], rtol=1e-10, atol=1e-9)
    with torch.no_grad():
        torch.testing.assert_close(prepared[1].log_prob(grid), values[0].detach(), rtol=1e-12, atol=1e-10)
    with results_checked_by_caller():
        hessians = [  # a fit's Newton steps: second derivatives through the uncompiled expression
            torch.autograd.functional.hessian(lambda t, p=p: p.log_prob(t).sum(), grid[0].detach()) for p in prepared
        ]
    torch.testing.assert_close(hessians[1], hessians[0], rtol=1e-9, atol=1e-9)


@needs_compiler
@pytest.mark.parametrize("pair", ["film"], indirect=True)
def test_far_tail_intervals_stay_compiled(pair):
    """A later factor's Gaussian moved 3 below the range and narrowed e³-fold: its interval lies far in the tail.

    The fast expression declines it (checked), the variant with the tail formula takes it (and,
    for these events, every later call), and the compiled result is the uncompiled one's.
    """
    model, _, events = pair
    model = copy.deepcopy(model)
    config, later = model.config, model.networks[1]
    with torch.no_grad():
        later.head.bias[config.n_gauss] -= 3.0 / config.s_mu
        later.head.bias[2 * config.n_gauss] -= 3.0 / config.s_sigma
    compiled = compiled_copy(model)
    theta = torch.tensor([[0.2, -0.3], [-0.9, 0.6]], dtype=torch.float64, requires_grad=True)
    prepared = compiled.prepare(events)
    stacked, scaled = prepared._stacked[0], compiled.scale_theta(theta.detach())
    oks = [bool(stacked.kernels(scaled, stacked.kernel_inputs, True, far)[2]) for far in (False, True)]
    assert oks == [False, True]
    assert not stacked.far_tails
    assert path_node(prepared, theta) == "_GivenJacobianBackward"
    assert stacked.far_tails  # declined once: later calls take the tail variant directly
    values = [p.log_prob(theta) for p in (model.prepare(events), prepared)]
    torch.testing.assert_close(values[1], values[0], rtol=1e-12, atol=1e-10)
    gradients = [torch.autograd.grad(v.sum(), theta)[0] for v in values]
    torch.testing.assert_close(gradients[1], gradients[0], rtol=1e-10, atol=1e-9)


@needs_compiler
def test_compiled_float32_matches_float64(pair):
    """float32, one θ: the compiled value and gradient against the uncompiled float64 ones.

    The reference is autograd in float64, not finite differences: the networks are piecewise linear
    in θ, and a kink within the step moved a central difference by 3e-4 of the gradient here. The
    tolerances are float32's rounding: of each event's terms up to ~10², and summed over 300 events.
    """
    model, _, events = pair
    compiled32 = compiled_copy(model).to(torch.float32)
    theta = torch.tensor([0.3, -0.4], dtype=torch.float32, requires_grad=True)
    prepared32 = compiled32.prepare(events.float())
    assert path_node(prepared32, theta[None]) == "_GivenJacobianBackward"
    values = prepared32.log_prob(theta)
    (grad,) = torch.autograd.grad(values.sum(), theta)
    theta64 = theta.detach().double().requires_grad_()
    expected = model.prepare(events).log_prob(theta64)
    torch.testing.assert_close(values.double(), expected.detach(), rtol=1e-5, atol=1e-4)
    (expected_grad,) = torch.autograd.grad(expected.sum(), theta64)
    torch.testing.assert_close(grad.double(), expected_grad, rtol=2e-4, atol=1e-3)


@needs_compiler
@pytest.mark.parametrize("design", list(CONFIGS))
def test_compiled_ensemble_and_member_views(design):
    model, x = toy_model(design, ensemble=2)
    compiled = compiled_copy(model)
    events, theta = x[:200], torch.tensor([[0.1, 0.4], [-0.5, -0.2]], dtype=torch.float64, requires_grad=True)
    prepared = [m.prepare(events) for m in (model, compiled)]
    assert path_node(prepared[1], theta) == "_GivenJacobianBackward"
    values = [p.member_log_prob(theta) for p in prepared]
    torch.testing.assert_close(values[1], values[0], rtol=1e-12, atol=1e-10)
    gradients = [torch.autograd.grad(v.logsumexp(0).sum(), theta)[0] for v in values]
    torch.testing.assert_close(gradients[1], gradients[0], rtol=1e-10, atol=1e-9)
    assert compiled.member(1).kernels is compiled.kernels


@needs_compiler
@pytest.mark.parametrize("design", list(CONFIGS))
def test_one_unbounded_observable(design):
    """One factor only (no later factors) and no truncation: the expression's other branches."""
    torch.manual_seed(1)
    theta = torch.rand(2000, 1, dtype=torch.float64) * 2 - 1
    x = theta + 0.3 * torch.randn(2000, 1, dtype=torch.float64)
    model = DensityModel([Observable("x")], ["a"], config=CONFIGS[design], dtype=torch.float64)
    model.fit(x, theta, config=QUICK, progress=False)
    compiled = compiled_copy(model)
    grid = torch.tensor([[-0.5], [0.25]], dtype=torch.float64, requires_grad=True)
    prepared = [m.prepare(x[:100]) for m in (model, compiled)]
    assert path_node(prepared[1], grid) == "_GivenJacobianBackward"
    values = [p.log_prob(grid) for p in prepared]
    torch.testing.assert_close(values[1], values[0], rtol=1e-12, atol=1e-10)
    gradients = [torch.autograd.grad(v.sum(), grid)[0] for v in values]
    torch.testing.assert_close(gradients[1], gradients[0], rtol=1e-10, atol=1e-9)


@needs_compiler
def test_no_theta_and_no_events(pair):
    model, compiled, events = pair
    for n in (0, 7):
        for theta in (torch.zeros(0, 2, dtype=torch.float64), torch.zeros(2, 2, dtype=torch.float64)):
            expected = model.prepare(events[:n]).log_prob(theta)
            torch.testing.assert_close(compiled.prepare(events[:n]).log_prob(theta), expected)
            assert expected.shape == (len(theta), n)


@needs_compiler
def test_compiled_model_copies_and_pickles(pair):
    _, compiled, events = pair
    for twin in (copy.deepcopy(compiled), pickle.loads(pickle.dumps(compiled))):
        assert type(twin.kernels) is KERNELS[compiled.config.design] and twin.kernels is not compiled.kernels
        theta = torch.tensor([0.1, 0.2], dtype=torch.float64)
        torch.testing.assert_close(twin.prepare(events).log_prob(theta), compiled.prepare(events).log_prob(theta))


def test_compile_refuses_other_designs():
    model = DensityModel([Observable("x")], ["a"], config=replace(AMPLITUDES, design="paper"))
    with pytest.raises(ValueError, match=r"'amplitudes' and 'film' designs.*design='paper'"):
        model.compile()


def test_a_failing_backend_is_a_clear_error(tmp_path):
    """In a fresh process: torch reuses compiled code of the same function across backends within one."""
    model, _ = toy_model()
    model.save(tmp_path / "model.gmm")
    code = (
        "import torch, gmmpyro; from gmmpyro.toy import ToyModel\n"
        "def failing_backend(graph, example_inputs):\n"
        "    raise RuntimeError('no C++ compiler found')\n"
        f"model = gmmpyro.DensityModel.load({str(tmp_path / 'model.gmm')!r})\n"
        "model.compile(backend=failing_backend)\n"
        "x = ToyModel().sample(20, [0.1, 0.2], seed=0).double()\n"
        "model.prepare(x).log_prob(torch.tensor([0.1, 0.2], dtype=torch.float64))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode != 0
    last = run.stderr.strip().splitlines()[-1]
    assert re.match(r"RuntimeError: torch.compile could not compile the amplitudes kernels .*no C\+\+ compiler", last)


@needs_compiler
def test_outside_the_range_warns_as_uncompiled(pair):
    _, compiled, events = pair
    with pytest.warns(OutOfRangeWarning):
        compiled.prepare(events).log_prob(torch.tensor([3.0, 0.0], dtype=torch.float64))


def test_compile_leaves_torch_distribution_validation_alone():
    """torch.compile's first use in a process switches torch's validation off; ``compile()`` puts it back."""
    code = (
        "import torch, gmmpyro; from gmmpyro.toy import ToyModel; "
        "before = torch.distributions.Distribution._validate_args; "
        "model = gmmpyro.DensityModel(ToyModel().observables, ['cx', 'cy'], "
        "gmmpyro.NetworkConfig(design='amplitudes')); model.compile(); "
        "assert torch.distributions.Distribution._validate_args == before, 'changed'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
