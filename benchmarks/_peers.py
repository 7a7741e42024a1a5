"""Peer density estimators trained with gmmpyro's protocol, for ``toy_kl.py --peers`` and ``speed.py``.

Same events, same split (``gmmpyro.training.split_indices``), batch size, Adam learning
rate, plateau schedule (× 0.5 after 2 epochs without improvement) and early stopping
(patience, tolerance 1e-4), best epoch restored. Both peers model data space directly:
events and parameters are standardised with the training mean and standard deviation, and
the flow's log density gets the affine Jacobian back. :class:`PeerDensity` gives a trained
peer gmmpyro's ``ConditionalDensity`` interface, so that scans and NUTS run it unchanged.
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


# ------------------------------------------------------------------ peers as gmmpyro densities


def toy_nsf():
    """zuko's conditional neural spline flow for the toy (4 observables, 2 parameters)."""
    import zuko

    return zuko.flows.NSF(4, 2, transforms=4, hidden_features=(128, 128))


def toy_mdn():
    """sbi's builder of the mixture-density likelihood estimator for the toy (:func:`fit_sbi` builds it)."""
    from sbi.neural_nets import likelihood_nn

    return likelihood_nn(model="mdn", num_components=20)


class PeerDensity:
    """A trained peer behind gmmpyro's ``ConditionalDensity`` interface.

    gmmpyro's likelihood, scans and ``sample_posterior`` then run it exactly as they run a
    :class:`gmmpyro.DensityModel`. ``prepare(x)`` does the peer's own θ-independent work
    once: standardising the events for the flow, laying them out as sbi's sample dimension
    for the MDN (sbi evaluates its network once per θ, not per event).

    Arguments:
        kind: ``"flow"`` (a zuko flow trained by :func:`fit_flow`) or ``"sbi"`` (an sbi
            estimator trained by :func:`fit_sbi`).
        module: the trained network, already on its device and in its dtype.
        x, theta: the training data, for the flow's standardisation.
        like: a density whose observables, params and theta_bounds the peer shares (the toy).
    """

    def __init__(self, kind: str, module, x: torch.Tensor, theta: torch.Tensor, like) -> None:
        if kind not in ("flow", "sbi"):
            raise ValueError(f"kind must be 'flow' or 'sbi', got {kind!r}")
        self.kind, self.module = kind, module
        self.observables, self.params, self.theta_bounds = like.observables, like.params, like.theta_bounds
        p = next(module.parameters())
        self.device, self.dtype = p.device, p.dtype
        x, theta = x.to(p), theta.to(p)
        self._x_mean, self._x_std, self._t_mean, self._t_std = _standardiser(x, theta)
        self._log_jacobian = -torch.log(self._x_std).sum()

    def __repr__(self) -> str:
        size = sum(q.numel() for q in self.module.parameters())
        return f"PeerDensity({self.kind}: {type(self.module).__name__}, {size} weights)"

    def _flow_log_prob(self, z: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        return self.module((theta - self._t_mean) / self._t_std).log_prob(z) + self._log_jacobian

    def _sbi_log_prob(self, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """``x (S, B, d)``, ``theta (B, k)`` → ``(S, B)``: sbi's own layout."""
        return self.module.log_prob(x, theta)

    def log_prob(self, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        x, theta = torch.as_tensor(x).to(self.dtype), torch.as_tensor(theta).to(self.dtype)
        if self.kind == "flow":
            return self._flow_log_prob((x - self._x_mean) / self._x_std, theta)
        batch = torch.broadcast_shapes(x.shape[:-1], theta.shape[:-1])
        xb = x.expand(*batch, x.shape[-1]).reshape(1, -1, x.shape[-1])  # 1 M d
        tb = theta.expand(*batch, theta.shape[-1]).reshape(-1, theta.shape[-1])  # M k
        return self._sbi_log_prob(xb, tb).reshape(batch)

    def sample(self, n: int, theta: torch.Tensor, seed: int | None = None) -> torch.Tensor:
        raise NotImplementedError("peers are only scored here; sample the toy instead")

    def prepare(self, x: torch.Tensor) -> _PreparedPeer:
        return _PreparedPeer(self, torch.as_tensor(x, dtype=self.dtype, device=self.device))


class _PreparedPeer:
    def __init__(self, peer: PeerDensity, x: torch.Tensor) -> None:
        self.model, self.events, self.n_events = peer, x, int(x.shape[0])
        if peer.kind == "flow":
            self._z = (x - peer._x_mean) / peer._x_std  # N d
        else:
            self._z = x.unsqueeze(1)  # N 1 d: sbi's sample dimension

    def log_prob(self, theta: torch.Tensor) -> torch.Tensor:
        """``theta (*b, k)`` → ``(*b, N)``."""
        peer = self.model
        if peer.kind == "flow":
            return peer._flow_log_prob(self._z, theta.unsqueeze(-2))  # *b N
        flat = theta.reshape(-1, theta.shape[-1])  # B k
        lp = peer._sbi_log_prob(self._z.expand(-1, flat.shape[0], -1), flat)  # N B
        return lp.T.reshape(*theta.shape[:-1], self.n_events)


def train_peers(names, x, theta, like, *, epochs: int, seed: int, device, dtype) -> dict[str, PeerDensity]:
    """Train the named peers (``"zuko NSF"``, ``"sbi MDN"``) for ``epochs`` with the protocol above."""
    from types import SimpleNamespace

    args = SimpleNamespace(seed=seed, batch_size=500, max_epochs=epochs, stop_patience=10, quiet=True)
    peers = {}
    for name in names:
        torch.manual_seed(seed)
        if name == "zuko NSF":
            module = fit_flow(name, toy_nsf(), x, theta, args)[4]
            kind = "flow"
        elif name == "sbi MDN":
            module = fit_sbi(toy_mdn(), x, theta, args)[4]
            kind = "sbi"
        else:
            raise ValueError(f"unknown peer {name!r}")
        peers[name] = PeerDensity(kind, module.to(device=device, dtype=dtype), x, theta, like)
    return peers
