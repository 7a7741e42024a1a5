"""Training an ensemble's members one after the other or as one batched network: one step, side by side.

An ensemble (``DensityModel(ensemble=K)``) trains its ``K`` members together, in one loop over
the data, each member's networks called in turn. The alternative is one batched network: the
members' parameters stacked (``torch.func.stack_module_state``) and the networks called once
under ``torch.func.vmap``, the mixtures scored in one call. This script times one training
step (forward, loss, backward) of the last factor of the toy (three preceding observables,
two parameters) both ways, with the networks of each design at the paper's sizes, on a batch
of ``--batch`` events; the two ways give the same loss (printed). It prints one table and the
machine.

Usage::

    OMP_NUM_THREADS=1 python -P benchmarks/ensemble_batching.py
    python -P benchmarks/ensemble_batching.py --device cuda --members 5 10
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
from dataclasses import replace
from pathlib import Path

# benchmarks/profile.py would shadow the standard library's profile module: keep this folder last
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import torch  # noqa: E402
from nuts import machine_info  # noqa: E402  (benchmarks/nuts.py)
from speed import _now  # noqa: E402  (benchmarks/speed.py)
from torch.func import functional_call, stack_module_state, vmap  # noqa: E402

from gmmpyro.film import FilmMixtureNetwork  # noqa: E402
from gmmpyro.mixture import mixture_log_prob  # noqa: E402
from gmmpyro.networks import GaussianMixtureNetwork  # noqa: E402
from gmmpyro.toy import paper_config  # noqa: E402

LATENT_RANGE = (-5.0, 5.0)
DESIGNS = {
    "paper": (GaussianMixtureNetwork, paper_config()),
    "film": (FilmMixtureNetwork, replace(paper_config(), design="film")),
}


class _MixtureOf(torch.nn.Module):
    """A factor network as a module whose call returns its stacked mixture parameters ``(3, B, N_G)``."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, theta: torch.Tensor, u_prev: torch.Tensor) -> torch.Tensor:
        net = self.network
        return torch.stack(net.mixture(net.theta_part(theta), net.event_part(u_prev)))


def step_ms(loss_fn, device: torch.device, repeats: int) -> float:
    """Median ms of ``loss_fn().backward()`` after three warm-up steps."""
    cuda, times = device.type == "cuda", []
    for i in range(repeats + 3):
        start = _now(cuda)
        loss_fn().backward()
        if i >= 3:
            times.append(_now(cuda) - start)
    return 1e3 * statistics.median(times)


def measure(design: str, members: int, batch: int, device: torch.device, repeats: int) -> dict:
    """One step of ``members`` networks of ``design``, in a loop and batched: ms and the two losses."""
    cls, config = DESIGNS[design]
    torch.manual_seed(0)
    nets = [_MixtureOf(cls(2, 3, config, LATENT_RANGE)).to(device) for _ in range(members)]
    generator = torch.Generator(device=device).manual_seed(1)
    theta = torch.rand(batch, 2, generator=generator, device=device) * 2 - 1
    u_prev = torch.rand(batch, 3, generator=generator, device=device) * 8 - 4
    u = torch.rand(batch, generator=generator, device=device) * 8 - 4
    params, buffers = stack_module_state(nets)
    template = copy.deepcopy(nets[0]).to("meta")

    def loop() -> torch.Tensor:
        return sum(-mixture_log_prob(u, *net(theta, u_prev), LATENT_RANGE).mean() for net in nets)

    def batched() -> torch.Tensor:
        outputs = vmap(lambda p, b: functional_call(template, (p, b), (theta, u_prev)))(params, buffers)  # K 3 B N_G
        return -mixture_log_prob(u, *outputs.unbind(1), LATENT_RANGE).mean(-1).sum()

    with torch.no_grad():
        losses = (float(loop()), float(batched()))
    loop_ms, batched_ms = [], []
    for _ in range(2):  # alternating, so that a change in load falls on both
        loop_ms.append(step_ms(loop, device, repeats))
        batched_ms.append(step_ms(batched, device, repeats))
    return {"loop_ms": min(loop_ms), "batched_ms": min(batched_ms), "losses": losses}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--designs", nargs="+", default=list(DESIGNS), choices=list(DESIGNS))
    parser.add_argument("--members", type=int, nargs="+", default=[5])
    parser.add_argument("--batch", type=int, default=500, help="events per step (the paper's batch)")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    results = {(d, k): measure(d, k, args.batch, device, args.repeats) for d in args.designs for k in args.members}
    print("machine: " + " | ".join(f"{k} {v}" for k, v in machine_info(device).items()))
    print(f"one training step of the toy's last factor, {args.batch} events, float32; "
          f"ms: the faster of two alternating medians of {args.repeats}")  # fmt: skip
    print()
    print("| design | members | loop (ms) | batched (ms) | loop ÷ batched | loss, loop | loss, batched |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for (design, k), r in results.items():
        print(f"| {design} | {k} | {r['loop_ms']:.2f} | {r['batched_ms']:.2f} | {r['loop_ms'] / r['batched_ms']:.2f} "
              f"| {r['losses'][0]:.6f} | {r['losses'][1]:.6f} |")  # fmt: skip
    return {f"{d}/{k}": r for (d, k), r in results.items()}


if __name__ == "__main__":
    main()
