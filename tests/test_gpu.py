"""The same numbers on CUDA as on the CPU (run with ``pytest -m gpu --device cuda``; skipped without CUDA)."""

from __future__ import annotations

import copy
import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch
from helpers import SMALL_NETWORK, trained_toy_model

from gmmpyro import DensityModel, TrainingConfig
from gmmpyro.exceptions import ConvergenceWarning
from gmmpyro.toy import ToyModel

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module", params=["paper", "lowrank", "amplitudes"])
def cpu_model(request):
    if request.param == "paper":
        return trained_toy_model()
    toy = ToyModel()
    x, theta = toy.grid_dataset(200, seed=0)
    torch.manual_seed(0)
    model = DensityModel(
        toy.observables, toy.params, config=replace(SMALL_NETWORK, design=request.param, rank=4), dtype=torch.float64
    )
    model.fit(x, theta, config=TrainingConfig(max_epochs=2), progress=False)
    return model


def test_prepared_log_prob_and_gradient_match_the_cpu(cpu_model):
    gpu_model = copy.deepcopy(cpu_model).to("cuda")
    x = ToyModel().sample(2000, [0.4, -0.6], seed=3)
    grid = torch.tensor([[0.4, -0.6], [-0.2, 0.9], [1.0, 1.0]], dtype=torch.float64)
    cpu = cpu_model.prepare(x).log_prob(grid)
    prepared = gpu_model.prepare(x.cuda())
    assert prepared.events.is_cuda
    gpu = prepared.log_prob(grid.cuda())
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-9, atol=1e-9)
    theta = grid[0].cuda().requires_grad_()
    (grad,) = torch.autograd.grad(prepared.log_prob(theta).sum(), theta)
    theta_cpu = grid[0].clone().requires_grad_()
    (grad_cpu,) = torch.autograd.grad(cpu_model.prepare(x).log_prob(theta_cpu).sum(), theta_cpu)
    torch.testing.assert_close(grad.cpu(), grad_cpu, rtol=1e-8, atol=1e-8)


def test_compiled_amplitudes_on_cuda_match_the_cpu():
    """``DensityModel.compile()`` on CUDA (Triton kernels) against the uncompiled CPU path, float64."""
    toy = ToyModel()
    x, theta = toy.grid_dataset(200, seed=0)
    torch.manual_seed(0)
    config = replace(SMALL_NETWORK, design="amplitudes", rank=4)
    cpu_model = DensityModel(toy.observables, toy.params, config=config, dtype=torch.float64)
    cpu_model.fit(x, theta, config=TrainingConfig(max_epochs=2), progress=False)
    gpu_model = copy.deepcopy(cpu_model).to("cuda")
    gpu_model.compile()
    events = toy.sample(2000, [0.4, -0.6], seed=3)
    grid = torch.tensor([[0.4, -0.6], [-0.2, 0.9], [1.0, 1.0]], dtype=torch.float64, requires_grad=True)
    cpu = cpu_model.prepare(events).log_prob(grid)
    gpu_grid = grid.detach().cuda().requires_grad_()
    prepared = gpu_model.prepare(events.cuda())
    scaled = gpu_model.scale_theta(gpu_grid)
    assert prepared._stacked[0].log_prob(scaled).grad_fn.name() == "_GivenJacobianBackward"
    gpu = prepared.log_prob(gpu_grid)
    torch.testing.assert_close(gpu.detach().cpu(), cpu.detach(), rtol=1e-9, atol=1e-9)
    (grad_gpu,) = torch.autograd.grad(gpu.sum(), gpu_grid)
    (grad_cpu,) = torch.autograd.grad(cpu.sum(), grid)
    torch.testing.assert_close(grad_gpu.cpu(), grad_cpu, rtol=1e-8, atol=1e-8)


def test_scan_and_posterior_run_on_cuda(cpu_model):
    import arviz as az
    import pyro.distributions as dist

    from gmmpyro import bayes, profile

    gpu_model = copy.deepcopy(cpu_model).to("cuda")
    x = ToyModel().sample(400, [0.4, -0.6], seed=4)
    grid = {"cx": (0.0, 0.8, 5), "cy": (-1.0, -0.2, 5)}
    # a model of two epochs and chains of 50 draws converge poorly; what is compared is the two devices
    with warnings.catch_warnings(record=True) as on_cpu:
        warnings.simplefilter("always", ConvergenceWarning)
        scan_cpu = profile.scan(cpu_model, x, grid)
    with warnings.catch_warnings(record=True) as on_gpu:
        warnings.simplefilter("always", ConvergenceWarning)
        scan_gpu = profile.scan(gpu_model, x.cuda(), grid)
    assert [str(w.message) for w in on_gpu] == [str(w.message) for w in on_cpu]
    np.testing.assert_allclose(scan_gpu.q, scan_cpu.q, rtol=1e-7, atol=1e-7)
    priors = {"cx": dist.Uniform(-1.5, 1.5), "cy": dist.Uniform(-1.5, 1.5)}
    runs = {}
    for model, events in ((cpu_model, x), (gpu_model, x.cuda())):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            runs[model.device.type] = bayes.sample_posterior(
                model, events, priors, num_samples=100, warmup_steps=100, num_chains=2, seed=0, progress=False,
                sampler="nuts",
            )
    assert runs["cuda"]["posterior"]["cx"].shape == (2, 100)
    # the devices draw different random numbers: the two means agree within their Monte Carlo errors
    # (posterior sd / sqrt(ESS) each, ArviZ's bulk ESS; 5 combined standard errors)
    for name in ("cx", "cy"):
        draws = {d: idata["posterior"][name] for d, idata in runs.items()}
        se2 = sum(float(v.std()) ** 2 / float(az.ess(v.values)) for v in draws.values())
        assert abs(float(draws["cuda"].mean()) - float(draws["cpu"].mean())) < 5 * se2**0.5


@pytest.mark.parametrize("data_device", ["cpu", "cuda"])
def test_training_on_cuda_follows_the_cpu(data_device):
    """Same initial weights and batches: one epoch on CUDA gives the CPU's losses and density."""
    toy = ToyModel()
    x, theta = toy.grid_dataset(40, seed=1)
    torch.manual_seed(0)
    cpu_model = DensityModel(toy.observables, toy.params, config=SMALL_NETWORK, dtype=torch.float64)
    gpu_model = copy.deepcopy(cpu_model).to("cuda")
    config = TrainingConfig(max_epochs=1)
    cpu_model.fit(x, theta, config=config, progress=False)
    gpu_model.fit(x.to(data_device), theta.to(data_device), config=config, progress=False)
    assert gpu_model.projection is not None and gpu_model.device.type == "cuda"
    torch.testing.assert_close(
        torch.tensor(gpu_model.history.val_loss), torch.tensor(cpu_model.history.val_loss), rtol=1e-6, atol=1e-8
    )
    events = toy.sample(200, [0.3, 0.2], seed=2)
    at = torch.tensor([0.3, 0.2], dtype=torch.float64)
    torch.testing.assert_close(
        gpu_model.log_prob(events.cuda(), at.cuda()).cpu(), cpu_model.log_prob(events, at), rtol=1e-6, atol=1e-6
    )


@pytest.mark.parametrize("sampler", ["batched", "smc"])
def test_batched_samplers_on_cuda_agree_with_the_cpu(sampler):
    """The whole sampler state on the GPU (priors there too); means within the Monte Carlo errors of both runs."""
    import arviz as az
    import pyro.distributions as dist

    from gmmpyro import bayes
    from gmmpyro.inference.bayes import SMCConfig
    from gmmpyro.inference.smc import distinct_lineages

    model = trained_toy_model()
    x = ToyModel().sample(400, [0.4, -0.6], seed=5)
    runs = {}
    for device in ("cpu", "cuda"):
        low, high = (torch.tensor(v, dtype=torch.float64, device=device) for v in (-1.5, 1.5))
        options = {"num_chains": 16, "num_samples": 200, "warmup_steps": 200} if sampler == "batched" else {
            "num_chains": 2, "config": SMCConfig(n_particles=500)}  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            runs[device] = bayes.sample_posterior(
                copy.deepcopy(model).to(device), x.to(device), {"cx": dist.Uniform(low, high),
                "cy": dist.Uniform(low, high)}, sampler=sampler, seed=0, progress=False, **options)  # fmt: skip
    def lineages(idata) -> float:  # distinct prior ancestors, summed over the runs
        return sum(distinct_lineages(r) for r in idata["sample_stats"]["lineage"].values)

    for name in ("cx", "cy"):
        draws = {d: np.asarray(idata["posterior"][name].values) for d, idata in runs.items()}
        # ESS: ArviZ's bulk ESS for chains; for SMC particles their distinct lineages (a lower bound)
        ess = {d: float(az.ess(v)) if sampler == "batched" else lineages(runs[d]) for d, v in draws.items()}
        se2 = sum(v.std() ** 2 / ess[d] for d, v in draws.items())
        assert abs(draws["cuda"].mean() - draws["cpu"].mean()) < 5 * se2**0.5
