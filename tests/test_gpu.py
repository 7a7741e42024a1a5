"""The same numbers on CUDA as on the CPU (run with ``pytest -m gpu --device cuda``; skipped without CUDA)."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch
from helpers import SMALL_NETWORK, trained_toy_model

from gmmpyro import DensityModel, TrainingConfig
from gmmpyro.toy import ToyModel

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module", params=["paper", "lowrank"])
def cpu_model(request):
    if request.param == "paper":
        return trained_toy_model()
    toy = ToyModel()
    x, theta = toy.grid_dataset(200, seed=0)
    torch.manual_seed(0)
    model = DensityModel(
        toy.observables, toy.params, config=replace(SMALL_NETWORK, design="lowrank", rank=4), dtype=torch.float64
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


def test_scan_and_posterior_run_on_cuda(cpu_model):
    import pyro.distributions as dist

    from gmmpyro import bayes, profile

    gpu_model = copy.deepcopy(cpu_model).to("cuda")
    x = ToyModel().sample(400, [0.4, -0.6], seed=4)
    scan_cpu = profile.scan(cpu_model, x, {"cx": (0.0, 0.8, 5), "cy": (-1.0, -0.2, 5)})
    scan_gpu = profile.scan(gpu_model, x.cuda(), {"cx": (0.0, 0.8, 5), "cy": (-1.0, -0.2, 5)})
    torch.testing.assert_close(torch.as_tensor(scan_gpu.q), torch.as_tensor(scan_cpu.q), rtol=1e-7, atol=1e-7)
    priors = {"cx": dist.Uniform(-1.5, 1.5), "cy": dist.Uniform(-1.5, 1.5)}
    idata = bayes.sample_posterior(
        gpu_model, x.cuda(), priors, num_samples=50, warmup_steps=50, num_chains=2, seed=0, progress=False
    )
    assert idata["posterior"]["cx"].shape == (2, 50)
    assert abs(float(idata["posterior"]["cx"].mean()) - 0.4) < 0.3  # 400 events: posterior sd ≈ 0.05
