"""The trained model as a surrogate simulator: events per second of ``DensityModel.sample`` beside the toy's own.

One run, one machine, side by side:

* the exact toy simulator (:meth:`gmmpyro.toy.ToyModel.sample` at one θ, ``simulate`` with one
  θ per event: closed forms and a numerical inversion of one CDF);
* gmmpyro with the paper network, one network (``K = 1``);
* the same network as an ensemble of ``--members`` members (each event from a member chosen at
  random, each member drawing only its own events), and, as the baseline measured in the same
  run, every member drawing all the events (what a draw from the mixture costs when the choice
  is made after drawing).

Columns: events per second at one θ (``--events`` events) and with one θ per event (``--events``
points drawn uniformly over the box), the median of ``--repeats`` timed calls after one warm-up.
The networks are freshly initialised and fitted for one epoch on a small toy dataset: the cost
of a draw does not depend on training.

    OMP_NUM_THREADS=1 python -P benchmarks/sampling.py
    python -P benchmarks/sampling.py --device cuda --events 1000000
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch

import gmmpyro
from gmmpyro import designs
from gmmpyro.model import _inverse_permutation
from gmmpyro.toy import ToyModel, paper_config


def machine() -> str:
    return (
        f"{platform.platform()} | {platform.processor() or platform.machine()} | {os.cpu_count()} CPUs | "
        f"{torch.get_num_threads()} torch threads | torch {torch.__version__} | gmmpyro {gmmpyro.__version__}"
    )


def events_per_second(draw: Callable[[int], torch.Tensor], n: int, repeats: int, device: torch.device) -> float:
    """Median rate of ``repeats`` timed calls of ``draw(seed)`` (``n`` events each), after one warm-up."""
    draw(0)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = []
    for seed in range(1, repeats + 1):
        tic = time.perf_counter()
        draw(seed)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds.append(time.perf_counter() - tic)
    return n / statistics.median(seconds)


def fitted_model(members: int, device: torch.device) -> gmmpyro.DensityModel:
    """The paper network (``members`` sets of it), fitted for one epoch on 9 800 toy events."""
    toy = ToyModel()
    theta = designs.uniform(9_800, toy.theta_bounds, seed=0)
    x = toy.simulate(theta, seed=1)
    torch.manual_seed(0)
    model = gmmpyro.DensityModel(toy.observables, toy.params, config=paper_config(), ensemble=members)
    model.fit(x.float(), theta.float(), config=gmmpyro.TrainingConfig(max_epochs=1), progress=False)
    return model.to(device)


def every_member_draws_all(model: gmmpyro.DensityModel, n: int, theta: torch.Tensor, seed: int) -> torch.Tensor:
    """The baseline: every member draws all ``n`` events, then one member's draw is kept per event."""
    generator = torch.Generator(device=model.device).manual_seed(seed)
    with torch.no_grad():
        draws = torch.stack([model._sample_latent(m, n, theta, generator) for m in range(model.ensemble)])
        chosen = torch.randint(model.ensemble, draws.shape[1:-1], generator=generator, device=model.device)
        u = torch.gather(draws, 0, chosen[None, ..., None].expand(1, *draws.shape[1:]))[0]
        return model.projection.inverse(u[..., _inverse_permutation(model.order)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--members", type=int, default=5, help="ensemble size K")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    n = args.events

    toy = ToyModel()
    single, ensemble = fitted_model(1, device), fitted_model(args.members, device)
    point = torch.tensor([0.8, -0.8], dtype=torch.float64)
    rows = designs.uniform(n, single.theta_bounds.double().cpu(), seed=2)  # n 2: one θ per event, in the trained range
    cases = {
        "exact toy simulator": (lambda s: toy.sample(n, point, seed=s), lambda s: toy.simulate(rows, seed=s)),
    }
    for label, model in (("gmmpyro paper network", single), (f"ensemble, K = {args.members}", ensemble)):
        at, each = point.to(device, model.dtype), rows.to(device, model.dtype)
        cases[label] = (
            lambda s, m=model, at=at: m.sample(n, at, seed=s),
            lambda s, m=model, each=each: m.sample(1, each, seed=s),
        )
    at, each = (t.to(device, ensemble.dtype) for t in (point, rows))
    checked = ensemble.check_theta(at)
    cases[f"ensemble, K = {args.members}, every member draws all events (baseline)"] = (
        lambda s: every_member_draws_all(ensemble, n, checked, s),
        lambda s: every_member_draws_all(ensemble, 1, ensemble.check_theta(each), s),
    )

    print(f"machine: {machine()} | device {device}")
    print(f"{n} events per call; median of {args.repeats} calls; networks fitted for one epoch\n")
    print("| sampler | events/s, one θ | events/s, one θ per event | vs the exact simulator (one θ / per event) |")
    print("|---|---:|---:|---|")
    rates = {}
    for label, (one, per_event) in cases.items():
        rates[label] = tuple(events_per_second(draw, n, args.repeats, device) for draw in (one, per_event))
    reference = rates["exact toy simulator"]
    for label, (one, per_event) in rates.items():
        ratios = f"{one / reference[0]:.2f} / {per_event / reference[1]:.2f}"
        print(f"| {label} | {one:,.0f} | {per_event:,.0f} | {ratios} |")


if __name__ == "__main__":
    main()
