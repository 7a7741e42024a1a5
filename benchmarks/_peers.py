"""Peer density estimators trained with gmmpyro's protocol, for ``toy_kl.py --peers``.

Same events, same split (``gmmpyro.training.split_indices``), batch size, Adam learning
rate, plateau schedule (× 0.5 after 2 epochs without improvement) and early stopping
(patience, tolerance 1e-4), best epoch restored. Both peers model data space directly:
events and parameters are standardised with the training mean and standard deviation, and
the flow's log density gets the affine Jacobian back.
"""

from __future__ import annotations

import copy
import math
import time

import torch

from gmmpyro.training import split_indices


def _train(name, module, loss_fn, x, theta, args):
    train_index, val_index = split_indices(x.shape[0], 0.2, args.seed)
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=1, threshold=1e-4,
                                                          threshold_mode="abs")
    best, best_state, bad, epochs = math.inf, copy.deepcopy(module.state_dict()), 0, 0
    generator = torch.Generator().manual_seed(args.seed)
    tic = time.perf_counter()
    for epoch in range(args.max_epochs):
        module.train()
        order = train_index[torch.randperm(train_index.numel(), generator=generator)]
        for start in range(0, order.numel(), args.batch_size):
            batch = order[start : start + args.batch_size]
            loss = loss_fn(x[batch], theta[batch]).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        module.eval()
        with torch.no_grad():
            val = torch.cat([loss_fn(x[i], theta[i]) for i in val_index.split(65_536)]).mean().item()
        schedule.step(val)
        epochs = epoch + 1
        if not args.quiet:
            print(f"{name}: epoch {epochs} val {val:.4f} lr {optimizer.param_groups[0]['lr']:.1e}", flush=True)
        if val < best - 1e-4:
            best, best_state, bad = val, copy.deepcopy(module.state_dict()), 0
        else:
            bad += 1
            if bad >= args.stop_patience:
                break
    module.load_state_dict(best_state)
    module.eval()
    return time.perf_counter() - tic, epochs


def _standardiser(x, theta):
    return x.mean(0), x.std(0), theta.mean(0), theta.std(0)


def fit_flow(name, flow, x, theta, args):
    """Train a zuko conditional flow; returns (log_prob, seconds, epochs, parameters, flow)."""
    x_mean, x_std, t_mean, t_std = _standardiser(x, theta)
    log_jacobian = -torch.log(x_std).sum()

    def loss_fn(xb, tb):
        return -flow((tb - t_mean) / t_std).log_prob((xb - x_mean) / x_std)

    seconds, epochs = _train(name, flow, loss_fn, x, theta, args)

    def log_prob(xq, tq):
        xq, tq = xq.float(), tq.float().expand(*xq.shape[:-1], -1)
        return flow((tq - t_mean) / t_std).log_prob((xq - x_mean) / x_std) + log_jacobian

    return log_prob, seconds, epochs, sum(p.numel() for p in flow.parameters()), flow


def fit_sbi(builder, x, theta, args):
    """Train an sbi likelihood estimator (it z-scores internally); same return as :func:`fit_flow`."""
    estimator = builder(theta[:10_000], x[:10_000])

    def loss_fn(xb, tb):
        return estimator.loss(xb, tb)

    seconds, epochs = _train("sbi MDN", estimator, loss_fn, x, theta, args)

    def log_prob(xq, tq):
        xq, tq = xq.float(), tq.float().expand(*xq.shape[:-1], -1)
        return -estimator.loss(xq, tq)

    return log_prob, seconds, epochs, sum(p.numel() for p in estimator.parameters()), estimator
