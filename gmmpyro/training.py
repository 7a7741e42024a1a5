"""Weighted maximum-likelihood training of a :class:`~gmmpyro.DensityModel`.

The factor networks have disjoint parameters, so each has its own learning rate, plateau
schedule, early stopping and best epoch; with ``joint=True`` (the default, measured faster)
they share one forward/backward pass per batch, which gives each network exactly the
gradient it would get alone.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import torch

from ._progress import progress_bar
from .data_parallel import DataParallel, current
from .exceptions import GmmpyroWarning, TrainingError, warn
from .observables import as_events, check_events, real_tensor
from .projection import LatentProjection
from .streaming import ParquetEvents, StreamedEvents
from .training_data import InMemoryEvents, WindowedEvents, split_indices

__all__ = ["TrainingConfig", "TrainingHistory", "split_indices", "train"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingConfig:
    """Settings of :meth:`DensityModel.fit`.

    Arguments:
        batch_size: events per optimisation step.
        learning_rate: Adam's initial learning rate.
        lr_factor: the learning rate is multiplied by this after ``lr_patience`` epochs
            without improvement of a network's validation loss.
        lr_patience: see ``lr_factor``.
        stop_patience: a network stops after this many epochs without an improvement
            larger than ``tolerance``; its best epoch is restored.
        tolerance: smallest validation-loss decrease (nats/event) that counts as improvement.
        max_epochs: upper limit of epochs.
        validation_fraction: fraction of events held out for validation (paper: 0.4).
        seed: seed of the split and of the batch order (and of the bootstrap weights).
        joint: one forward/backward pass per batch for all networks (``True``) or one
            network at a time (``False``); both reach the same optimum.
        bootstrap: give each member of an ensemble (``DensityModel(ensemble=K)``) its own
            Poisson(1) bootstrap weight per training event, on top of its own initial
            weights, so that the members' spread also reflects the finite number of
            simulated events. Needs the events in memory (not ``ParquetEvents``).

    Example:
        >>> TrainingConfig(batch_size=1000).lr_patience
        2
    """

    batch_size: int = 500
    learning_rate: float = 1e-3
    lr_factor: float = 0.5
    lr_patience: int = 2
    stop_patience: int = 10
    tolerance: float = 1e-4
    max_epochs: int = 200
    validation_fraction: float = 0.2
    seed: int = 0
    joint: bool = True
    bootstrap: bool = False

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError``, naming the field, for settings that cannot train."""
        for name in ("batch_size", "max_epochs", "lr_patience", "stop_patience", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"TrainingConfig.{name} must be an integer, got {value!r}")
        for name in ("batch_size", "max_epochs", "lr_patience", "stop_patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainingConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"TrainingConfig.learning_rate must be finite and > 0, got {self.learning_rate}")
        if not 0 < self.lr_factor <= 1:
            raise ValueError(f"TrainingConfig.lr_factor must lie in (0, 1], got {self.lr_factor}")
        if not 0 < self.validation_fraction < 1:
            raise ValueError(f"TrainingConfig.validation_fraction must lie in (0, 1), got {self.validation_fraction}")
        if not (math.isfinite(self.tolerance) and self.tolerance >= 0):
            raise ValueError(f"TrainingConfig.tolerance must be finite and >= 0, got {self.tolerance}")
        for name in ("joint", "bootstrap"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"TrainingConfig.{name} must be True or False, got {getattr(self, name)!r}")


@dataclass
class TrainingHistory:
    """What happened in training; per epoch one value per network (``nan`` once it stopped).

    Attributes:
        names: observable name of each network, in autoregressive order (for an ensemble,
            member by member, as ``"x1[m]"``).
        train_loss, val_loss, lr: lists over epochs of lists over networks (nats/event,
            latent space).
        best_epoch: per network, the epoch whose weights were kept (0-based).
        best_val_loss: per network, its validation loss.
        epoch_time: wall time per epoch (s).
        score_loss: with the simulator's joint score, per epoch the weighted mean over the
            training events of ``|∇θ log p̂(x|θ) - t|²`` (before ``score_weight``).
        interrupted: training stopped by ``KeyboardInterrupt`` or a callback.
    """

    names: list[str]
    train_loss: list[list[float]] = field(default_factory=list)
    val_loss: list[list[float]] = field(default_factory=list)
    lr: list[list[float]] = field(default_factory=list)
    best_epoch: list[int] = field(default_factory=list)
    best_val_loss: list[float] = field(default_factory=list)
    epoch_time: list[float] = field(default_factory=list)
    score_loss: list[float] = field(default_factory=list)
    interrupted: bool = False

    @property
    def n_epochs(self) -> int:
        """Number of epochs run."""
        return len(self.val_loss)

    @property
    def wall_time(self) -> float:
        """Total training time (s)."""
        return float(sum(self.epoch_time))

    def to_dict(self) -> dict:
        """Plain JSON-serialisable dictionary."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainingHistory:
        """Inverse of :meth:`to_dict`."""
        return cls(**data)

    def __repr__(self) -> str:
        best = ", ".join(
            f"{n}: {v:.4f}@{e}" for n, v, e in zip(self.names, self.best_val_loss, self.best_epoch, strict=False)
        )
        return (
            f"TrainingHistory(epochs={self.n_epochs}, wall_time={self.wall_time:.1f}s, "
            f"best val loss [{best}], interrupted={self.interrupted})"
        )


def _validated_inputs(model, x, theta, weights) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # the data stays on the CPU in float64 (projection fit, checkpoint fingerprint); batches move to the model
    x = as_events(x, model.observables, dtype=torch.float64, device="cpu")
    theta = real_tensor(theta, dtype=torch.float64, device="cpu", what="theta")
    check_events(x, model.observables)
    if x.dim() != 2:
        raise ValueError(f"x must have shape (N, d), got {tuple(x.shape)}")
    k = len(model.params)
    if theta.shape != (x.shape[0], k):
        raise ValueError(
            f"theta must have shape ({x.shape[0]}, {k}) for params {list(model.params)}, got {tuple(theta.shape)}"
        )
    if not torch.isfinite(theta).all():
        raise ValueError("theta contains NaN or inf")
    if weights is None:
        weights = torch.ones(x.shape[0], dtype=torch.float64)
    weights = real_tensor(weights, dtype=torch.float64, device="cpu", what="weights")
    if weights.shape != (x.shape[0],):
        raise ValueError(f"weights must have shape ({x.shape[0]},), got {tuple(weights.shape)}")
    if not torch.isfinite(weights).all() or (weights < 0).any() or weights.sum() <= 0:
        raise ValueError("weights must be finite, non-negative and not all zero")
    _check_theta_range(model, theta.min(0).values, theta.max(0).values)
    return x, theta, weights


def _check_theta_range(model, low: torch.Tensor, high: torch.Tensor) -> None:
    """Raise ``ValueError`` naming the parameter whose range ``[low, high]`` (each ``(k,)``) cannot be learned.

    The networks see ``4 (θ - low) / (high - low) - 2`` computed in the model's dtype (see
    :meth:`DensityModel.scale_theta`); with ``low``, ``high`` and ``high - low`` finite and
    ``high > low`` in that dtype it lies in ``[-2, 2]``. A range such as ``[0.3, 0.30000001]``
    is one value in float32, and ``±1e39`` is infinite there.
    """
    dtype = model.dtype
    low_d, high_d = low.to(dtype), high.to(dtype)
    width = high_d - low_d
    for i, name in enumerate(model.params):
        if low[i] == high[i]:
            raise ValueError(f"parameter {name!r} takes a single value in the training data; it cannot be learned")
        seen = f"parameter {name!r} spans [{low[i].item()!r}, {high[i].item()!r}] in the training data"
        if not (torch.isfinite(low_d[i]) and torch.isfinite(high_d[i]) and torch.isfinite(width[i])):
            raise ValueError(
                f"{seen}, which in {dtype} (the model's dtype) is [{low_d[i].item()}, {high_d[i].item()}] "
                f"with width {width[i].item()}: rescale {name!r}"
            )
        if not width[i] > 0:
            raise ValueError(
                f"{seen}, but takes a single value {low_d[i].item()!r} in {dtype} (the model's dtype); "
                f"it cannot be learned: shift or rescale {name!r}, or use dtype=torch.float64"
            )


def _training_weights(weights: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``weights (N,)`` (float64) scaled to mean 1 and converted to the networks' ``dtype``, shape ``(N,)``.

    The loss depends on the weights' ratios only; scaling first keeps weights that are finite
    in float64 but not in float32, such as 1e-50 (0) or 1e39 (inf), from breaking the loss.

    Example:
        >>> _training_weights(torch.full((3,), 1e39, dtype=torch.float64), torch.float32)
        tensor([1., 1., 1.])
    """
    scaled = weights / weights.max()
    scaled = (scaled / scaled.mean()).to(dtype)
    if not torch.isfinite(scaled).all():
        raise ValueError(
            f"the weights, scaled to mean 1, reach {scaled.max().item()} in {dtype} (the model's dtype): "
            "they are too unequal for it"
        )
    return scaled


def _reference_mask(model, theta: torch.Tensor, reference) -> torch.Tensor:
    """Events at ``θ_ref``: a boolean mask, a θ value, or (``None``) the point nearest the centre.

    With ``None`` and ``θ`` not on a grid (more distinct points than half the events, as when
    ``θ`` is drawn from a prior) every event defines the projection.
    """
    if reference is not None:
        reference = torch.as_tensor(reference)
    if reference is not None and reference.dtype == torch.bool:
        if reference.shape != theta.shape[:1]:
            raise ValueError(
                f"a reference mask must have shape ({theta.shape[0]},), got {tuple(reference.shape)}"
            )
        mask = reference
    else:
        low, high = theta.min(0).values, theta.max(0).values
        if reference is None:
            points = torch.unique(theta, dim=0)
            if 2 * points.shape[0] > theta.shape[0]:
                logger.info("θ is not on a grid: the projection is fitted on all %d events", theta.shape[0])
                return torch.ones(theta.shape[0], dtype=torch.bool)
            distance = (((points - (low + high) / 2) / (high - low)) ** 2).sum(-1)
            reference = points[distance.argmin()]
        reference = reference.to(torch.float64)
        if reference.shape != (len(model.params),):
            raise ValueError(f"reference must be a θ value of shape ({len(model.params)},) or a boolean mask")
        mask = ((theta - reference).abs() <= 1e-9 * (high - low)).all(-1)
    if not mask.any():
        raise ValueError(f"no training events at the reference point {reference.tolist()}")
    return mask


def _check_split(weights: torch.Tensor, config: TrainingConfig) -> None:
    """Raise ``ValueError`` if ``config``'s split has no training events, or its training or validation events weigh 0.

    Arguments:
        weights: the weights in the model's dtype, shape ``(N,)``.
    """
    train_index, val_index = split_indices(weights.shape[0], config.validation_fraction, config.seed)
    if train_index.numel() == 0:
        raise ValueError("too few events for a training/validation split")
    for what, index in (("training", train_index), ("validation", val_index)):
        if not weights[index].sum() > 0:
            raise ValueError(
                f"all {index.numel()} {what} events have zero weight (in {weights.dtype}): change "
                "TrainingConfig.seed or validation_fraction, or the weights"
            )


def _set_lr(optimizer: torch.optim.Optimizer, position: int, lr: float) -> None:
    optimizer.param_groups[position]["lr"] = lr


class _FactorLogProbs(torch.nn.Module):
    """The factor log-densities of a batch as one module's forward pass, which ``DistributedDataParallel`` wraps."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, u, theta_scaled, positions: list[int]) -> torch.Tensor:
        """``log p`` of the networks at ``positions`` for events ``u (B, d)``: ``(B, P)``.

        ``theta_scaled`` is ``(B, k)``, or ``(B, K, k)`` with one copy per ensemble member (so
        that each member's ∇θ is its own, for the joint score).
        """
        model = self.model
        if theta_scaled.dim() == 3:
            d = len(model.observables)
            theta_features = [
                net.theta_part(theta_scaled[:, p // d]) if p in positions else None
                for p, net in enumerate(model.networks)
            ]
        else:
            theta_features = model.theta_features(theta_scaled, positions)
        event_features = model.event_features(u, positions)
        return model.factor_log_probs(u, theta_features, event_features, positions)


class _Trainer:
    """One training run: data on the model's device (or streamed), per-network bookkeeping.

    In a data-parallel run (:mod:`gmmpyro.data_parallel`) each process computes its shard of
    every batch and the processes' loss sums are added before any decision.
    """

    def __init__(
        self,
        model,
        events: InMemoryEvents | WindowedEvents,
        config: TrainingConfig,
        parallel: DataParallel,
        score_weight: float = 0.0,
    ) -> None:
        self.model, self.events, self.config, self.parallel = model, events, config, parallel
        self.score_weight = score_weight
        # ∂θ_scaled/∂θ of each parameter: the networks' θ inputs are 4 (θ - low) / (high - low) - 2
        self.theta_scale = (4.0 / (model.theta_high - model.theta_low)).to(model.dtype)
        self.score_loss = float("nan")
        parallel.broadcast_module(model.networks)  # every process starts from the main process's weights
        self.factors = _FactorLogProbs(model)
        self.step_factors: torch.nn.Module = self.factors
        self.d = len(model.networks)
        self.optimizer = torch.optim.Adam(
            [{"params": net.parameters(), "lr": config.learning_rate} for net in model.networks]
        )
        self.best = [float("inf")] * self.d
        self.best_epoch = [0] * self.d
        self.best_state = [copy.deepcopy(net.state_dict()) for net in model.networks]
        self.bad_epochs = [0] * self.d
        self.lr_bad_epochs = [0] * self.d
        self.active = [True] * self.d
        self.member_of = torch.arange(self.d, device=model.device) // len(model.observables)
        self.bootstrap = None
        if config.bootstrap:
            n = events.table[0].shape[0]
            generator = torch.Generator().manual_seed(config.seed + 1)
            counts = torch.poisson(torch.ones(n, model.ensemble, dtype=torch.float64), generator=generator)
            self.bootstrap = counts.to(device=events.table[0].device, dtype=model.dtype)  # N K

    def _batch(self, table: list[torch.Tensor], index: torch.Tensor) -> list[torch.Tensor]:
        device = self.model.device
        return [t[index.to(t.device)].to(device, non_blocking=True) for t in table]

    def train_networks(self, positions: list[int]) -> None:
        """Train the networks at ``positions`` from now on; in a data-parallel run, synchronise only their gradients."""
        if not (self.parallel.distributed or self.score_weight):
            return
        # the joint score runs every network (∇θ log p̂ sums over all factors): only these may learn
        for position, net in enumerate(self.model.networks):
            net.requires_grad_(position in positions)
        self.step_factors = self.parallel.wrap(self.factors)

    def finish(self) -> None:
        """Keep each network's best weights; every network trainable again."""
        for net, state in zip(self.model.networks, self.best_state, strict=True):
            net.load_state_dict(state)
        self.model.networks.requires_grad_(True)
        self.model.eval()

    def train_epoch(self, epoch: int, positions: list[int]) -> list[float]:
        """One pass over the training events; the weighted mean loss of each network in ``positions``.

        Raises:
            TrainingError: a batch loss is NaN or infinite (checked before its optimiser step).
        """
        parallel, world = self.parallel, self.parallel.world_size
        K, P = self.model.ensemble, len(positions)
        member = self.member_of[positions]  # P: the member of each network
        # this process's score sums (per member) and loss sums (per network) over the epoch, and their weights
        sums = torch.zeros(K + P, dtype=torch.float64, device=self.model.device)
        totals = torch.zeros(K + P, dtype=torch.float64, device=self.model.device)
        self.model.train()
        for table, batch in self.events.training_batches(epoch):
            if batch.numel() < world:  # a last batch too small to give every process an event
                continue
            shard = parallel.shard(batch)
            u, theta_scaled, w, *score = self._batch(table, shard)
            # every process holds the whole batch's weights: their totals need no communication
            whole = self._batch([table[2]], batch)[0] if parallel.distributed else w  # B
            member_weights, member_totals = w[:, None], whole.sum().expand(K)  # B 1 and K
            if self.bootstrap is not None:  # each member's own weights, and its own total
                member_weights = w[:, None] * self._batch([self.bootstrap], shard)[0]  # B K
                member_totals = (whole[:, None] * self._batch([self.bootstrap], batch)[0]).sum(0)
            if self.score_weight:
                log_probs, score_sums = self._with_score(u, theta_scaled, member_weights, score[0], positions)
            else:
                log_probs, score_sums = self.step_factors(u, theta_scaled, positions), w.new_zeros(K)
            network_weights = member_weights[:, member] if self.bootstrap is not None else member_weights
            loss_sums = -(network_weights * log_probs).sum(0)  # P
            local = torch.cat([score_sums.detach(), loss_sums.detach()]).to(torch.float64)
            weights = torch.cat([member_totals, member_totals[member]]).to(torch.float64)  # K + P
            # one host sync per batch: the weights, and sums that are finite iff every loss is
            synced = torch.cat([weights, local]).tolist()
            if not any(synced[:K]):  # zero-weight events only: nothing to learn, and the loss is 0/0
                continue
            values = synced[K + P :]
            # a member whose bootstrap weights are all 0 in this batch has nothing to learn from it
            divisors = torch.where(weights > 0, weights, 1.0).to(log_probs.dtype)
            finite = math.isfinite(sum(values))
            if not finite and not parallel.distributed:
                self.diverged(epoch, positions, torch.tensor(values[K:]) / divisors[K:].cpu(), "training")
            loss = (loss_sums / divisors[K:]).sum()
            if self.score_weight:
                loss = loss + (self.score_weight * score_sums / divisors[:K]).sum()
            if not finite:  # NaN gradients reach every process through the averaging: all stop together, below
                loss = loss * math.nan
            self.optimizer.zero_grad(set_to_none=True)
            # DistributedDataParallel averages the processes' gradients: scaled by their number, it sums them
            (loss * world if parallel.distributed else loss).backward()
            if parallel.distributed:
                self._check_gradients(epoch, positions, torch.tensor(values[K:]) / divisors[K:].cpu())
            self.optimizer.step()
            sums += local
            totals += weights
        sums = parallel.sum(sums)  # one collective per epoch
        means = (sums / torch.where(totals > 0, totals, 1.0)).tolist()
        self.score_loss = sum(means[:K]) / K
        return means[K:]

    def _check_gradients(self, epoch: int, positions: list[int], losses: torch.Tensor) -> None:
        """Raise the :class:`TrainingError` of :meth:`diverged` if the averaged gradients are not finite.

        The gradients are the same in every process, so every process decides alike; a process
        whose own loss was not finite has made them NaN.
        """
        networks = [self.model.networks[p] for p in positions]
        finite = torch.stack([sum(g.grad.sum() for g in net.parameters() if g.grad is not None) for net in networks])
        finite = torch.isfinite(finite).cpu()
        if not finite.all():
            self.diverged(epoch, positions, torch.where(finite, losses, torch.nan), "training")

    def _with_score(self, u, theta_scaled, w, score, positions: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probabilities of the networks at ``positions`` ``(B, P)``, each member's ``Σ w |∇θ log p̂ - t|²`` (K).

        ``∇θ log p̂`` sums the θ-gradients of a member's factors (the projection does not depend
        on θ); each event's log-density depends on its own θ row only, so the gradient of their
        sum with respect to the θ inputs is the per-event score. An ensemble's members each get
        their own θ copy ``(B, K, k)``, their own score and their own weights ``w (B, 1 or K)``.
        The graph is kept so that the loss can be differentiated with respect to the weights (a
        second derivative).
        """
        K = self.model.ensemble
        theta_scaled = theta_scaled.detach()
        if K > 1:
            theta_scaled = theta_scaled[:, None].expand(-1, K, -1).clone()
        theta_scaled.requires_grad_(True)
        every = list(range(len(self.model.networks)))
        log_probs = self.step_factors(u, theta_scaled, every)
        (gradient,) = torch.autograd.grad(log_probs.sum(), theta_scaled, create_graph=True)
        if K == 1:
            gradient = gradient[:, None]  # B 1 k
        mismatch = ((gradient * self.theta_scale - score[:, None]) ** 2).sum(-1)  # B K
        return log_probs[:, positions], (w * mismatch).sum(0)

    @torch.no_grad()
    def validation_loss(self, epoch: int, positions: list[int]) -> list[float]:
        """The weighted mean loss of each network in ``positions`` on the validation events.

        Raises:
            TrainingError: a loss is NaN or infinite.
        """
        self.model.eval()
        totals = torch.zeros(len(positions), dtype=torch.float64, device=self.model.device)
        weight_total = torch.zeros((), dtype=torch.float64, device=self.model.device)
        for table, chunk in self.events.validation_chunks():
            chunk = self.parallel.shard(chunk)
            if chunk.numel() == 0:
                continue
            u, theta_scaled, w, *_ = self._batch(table, chunk)
            log_probs = self.factors(u, theta_scaled, positions)
            totals -= (w[:, None] * log_probs).sum(0).to(torch.float64)
            weight_total += w.sum()
        if self.parallel.distributed:
            summed = self.parallel.sum(torch.cat([totals, weight_total.reshape(1)]))
            totals, weight_total = summed[:-1], summed[-1]
        losses = totals / weight_total
        if not torch.isfinite(losses).all():
            self.diverged(epoch, positions, losses, "validation")
        return losses.tolist()

    def diverged(self, epoch: int, positions: list[int], losses: torch.Tensor, stage: str) -> None:
        """Raise the :class:`TrainingError` for the non-finite ``losses (len(positions),)`` of one step.

        There is no retry with a smaller learning rate: none of the usual causes (non-finite
        network constants, a learning rate out of scale, data at the edge of the dtype's range)
        goes away with one, and a retried run would no longer be the run its settings
        describe. The model keeps each network's best finite weights (:meth:`finish`).
        """
        model = self.model
        values = dict(zip(positions, losses.tolist(), strict=True))
        bad = [p for p in positions if not math.isfinite(values[p])]
        names = network_names(model)
        networks = ", ".join(f"{names[p]!r} ({values[p]})" for p in bad)
        lrs = sorted({self.optimizer.param_groups[p]["lr"] for p in bad})
        raise TrainingError(
            f"training diverged in epoch {epoch}: the {stage} loss is not finite for the "
            f"network{'s' if len(bad) > 1 else ''} of {networks}. "
            f"Likely causes: {'; '.join(_divergence_causes(model, bad, lrs))}. {self.kept()}"
        )

    def kept(self) -> str:
        """Which weights each network is left with after :meth:`finish`, in words."""
        if not any(math.isfinite(best) for best in self.best):
            return "The model keeps its initial weights."
        names = network_names(self.model)
        kept = [
            f"{name!r} those of epoch {epoch}" if math.isfinite(best) else f"{name!r} its initial ones"
            for name, best, epoch in zip(names, self.best, self.best_epoch, strict=True)
        ]
        return f"The model keeps the best finite weights so far: {', '.join(kept)}."

    def update(self, epoch: int, position: int, val_loss: float) -> None:
        """Best-epoch, plateau and early-stopping bookkeeping of one network."""
        config, net = self.config, self.model.networks[position]
        if val_loss < self.best[position] - config.tolerance:
            self.best[position], self.best_epoch[position] = val_loss, epoch
            self.best_state[position] = copy.deepcopy(net.state_dict())
            self.bad_epochs[position] = self.lr_bad_epochs[position] = 0
            return
        self.bad_epochs[position] += 1
        self.lr_bad_epochs[position] += 1
        if self.lr_bad_epochs[position] >= config.lr_patience:
            lr = self.optimizer.param_groups[position]["lr"] * config.lr_factor
            _set_lr(self.optimizer, position, lr)
            self.lr_bad_epochs[position] = 0
        if self.bad_epochs[position] >= config.stop_patience:
            self.active[position] = False


def network_names(model) -> list[str]:
    """The observable of each network in autoregressive order; ``"x1[m]"`` for member ``m`` of an ensemble."""
    names = [model.observables[c].name for c in model.order]
    if model.ensemble == 1:
        return names
    return [f"{name}[{m}]" for m in range(model.ensemble) for name in names]


def _divergence_causes(model, positions: list[int], lrs: list[float]) -> list[str]:
    """The likely reasons for the non-finite loss of the networks at ``positions``, most specific first."""
    settings = model.config.to_dict()
    non_finite = [f"{k}={v}" for k, v in settings.items() if isinstance(v, float) and not math.isfinite(v)]
    causes = [f"non-finite network settings (NetworkConfig {', '.join(non_finite)})"] if non_finite else []
    if not all(torch.isfinite(w).all() for p in positions for w in model.networks[p].parameters()):
        # a finite loss whose gradient is not: the step turns the weights NaN, the next loss shows it
        causes.append("the network weights are no longer finite: a NaN or infinite gradient in an earlier step")
    causes += [
        f"a learning rate too large for these data ({', '.join(f'{lr:g}' for lr in lrs)}): "
        "lower TrainingConfig.learning_rate",
        "extreme network settings (NetworkConfig s_f, s_mu, s_sigma, epsilon, f_sigma, init_scale)",
    ]
    if model.dtype != torch.float64:
        causes.append(f"the precision of {model.dtype}: try dtype=torch.float64")
    return causes


def _validated_score(model, score, n: int) -> torch.Tensor | None:
    """The joint scores as a float64 ``(N, k)`` tensor, checked; ``None`` stays ``None``."""
    if score is None:
        return None
    score = real_tensor(score, dtype=torch.float64, device="cpu", what="score")
    k = len(model.params)
    if score.shape != (n, k):
        raise ValueError(f"score must have shape ({n}, {k}) for params {list(model.params)}, got {tuple(score.shape)}")
    bad = (~torch.isfinite(score)).any(0)
    if bad.any():
        names = [p for p, b in zip(model.params, bad.tolist(), strict=True) if b]
        raise ValueError(f"score contains NaN or inf for {names}")
    return score


def _score_weight(has_score: bool, score_weight: float | None, config: TrainingConfig) -> float:
    """``α`` of the joint-score term: 0 without a score; checked with one."""
    if not has_score:
        if score_weight is not None:
            raise ValueError("score_weight is given but no score: pass score= (or ParquetEvents(score=...))")
        return 0.0
    if score_weight is None or not (math.isfinite(score_weight) and score_weight > 0):
        raise ValueError(f"a joint score needs score_weight > 0 (finite), got {score_weight!r}")
    if not config.joint:
        raise ValueError("the joint score trains all networks together: it needs TrainingConfig(joint=True)")
    return float(score_weight)


def _stream(model, events: ParquetEvents, theta, weights, score, reference, config: TrainingConfig) -> StreamedEvents:
    """The checked, summarised events of Parquet files, for training ``model``."""
    if theta is not None or weights is not None or score is not None:
        raise ValueError("with ParquetEvents, θ, weights and scores are columns of the files: omit theta and weights")
    if config.bootstrap:
        raise ValueError(
            "TrainingConfig(bootstrap=True) draws a weight per event and member: it needs the events in memory, "
            "not ParquetEvents"
        )
    stream = StreamedEvents(events, model.observables, model.params, reference=reference, seed=config.seed)
    _check_theta_range(model, stream.theta_low, stream.theta_high)
    largest = torch.tensor(1 / stream.weight_mean, dtype=torch.float64).to(model.dtype)  # the largest scaled weight
    if not torch.isfinite(largest):
        raise ValueError(f"{events.path}: the weights, scaled to mean 1, reach {largest.item()} in {model.dtype}")
    return stream


def _prepare_window(model, stream: StreamedEvents, x, theta, weights, score) -> list[torch.Tensor]:
    """One window's events as training sees them: ``[u (n, d), θ scaled (n, k), weights (n,)(, score (n, k))]``."""
    u = model.projection.forward(x.to(model.device), check=False)[:, list(model.order)]
    theta_scaled = model.scale_theta(theta.to(device=model.device, dtype=model.dtype))
    weights = weights / stream.weight_max / stream.weight_mean
    table = (u, theta_scaled, weights) if score is None else (u, theta_scaled, weights, score)
    return [t.to(device=model.device, dtype=model.dtype) for t in table]


def train(
    model,
    x,
    theta=None,
    weights=None,
    *,
    reference=None,
    config: TrainingConfig | None = None,
    progress: bool = True,
    callback: Callable[[int, TrainingHistory], bool | None] | None = None,
    checkpoint_dir: str | Path | None = None,
    score=None,
    score_weight: float | None = None,
) -> TrainingHistory:
    """Fit the projection on the reference events, then maximise the weighted mean log-likelihood.

    .. math:: \\max_φ \\; \\sum_n w_n \\log p_φ(h(x_n) | θ_n) \\,/\\, \\sum_n w_n

    With the simulator's joint score ``t(x, z | θ) = ∇θ log p(x, z | θ)`` of each event (the
    SCANDAL loss of Brehmer et al., as in MadMiner), the loss also holds
    ``α Σ_n w_n |∇θ log p̂_φ(x_n | θ_n) - t_n|² / Σ_n w_n``: the joint score is an unbiased,
    noisy estimate of the score of ``p(x | θ)``, so the term teaches the networks how the
    density changes with θ, which maximum likelihood alone learns only from the differences
    between simulated points. Early stopping still watches the validation log-likelihood.

    Arguments:
        model: the :class:`~gmmpyro.DensityModel` to train (in place).
        x: simulated events, shape ``(N, d)``; or :class:`~gmmpyro.ParquetEvents`,
            files streamed window by window (then θ and the weights are columns of the files,
            and ``reference`` is a θ value or ``None``).
        theta: the parameters each event was simulated at, shape ``(N, k)``.
        weights: optional Monte-Carlo weights ``(N,)``, non-negative.
        reference: the events that define the projection: a θ value ``(k,)``, a boolean
            mask ``(N,)``, or ``None``: the simulated point nearest the centre of the range, or
            all events when ``θ`` is not on a grid (more distinct points than half the events,
            e.g. ``θ`` drawn from a prior).
        config: a :class:`TrainingConfig`.
        progress: show a tqdm progress bar (per epoch: losses and learning rate).
        callback: called as ``callback(epoch, history)`` after every epoch; returning
            ``True`` stops training (the best epochs are kept).
        checkpoint_dir: save a checkpoint there after every epoch, and resume from it if
            one for the same data and settings exists.
        score: the joint score of each event, shape ``(N, k)``, in units of 1/θ (for
            ``ParquetEvents``: its ``score`` columns).
        score_weight: ``α`` of the joint-score term, > 0; needed with a score. Each training
            step then costs about three times as much (a second derivative).

    Under ``torchrun`` (or with a process group initialised) the processes train together,
    each on its share of every batch: see :mod:`gmmpyro.data_parallel`.

    Returns:
        The :class:`TrainingHistory` (also stored as ``model.history``). On
        ``KeyboardInterrupt`` the best weights so far are kept and ``interrupted`` is set.

    Raises:
        ValueError: naming the observable, parameter or setting, for inputs that cannot be
            trained on, among them a θ range or weights that the model's dtype cannot hold;
            the model is left unchanged.
        TrainingError: a loss became NaN or infinite (naming the network, the epoch and the
            likely causes; the model keeps each network's best finite weights so far and
            ``model.history`` the epochs run), or ``checkpoint_dir`` holds a checkpoint of
            another run (naming what differs).
    """
    from .checkpoint import TrainingCheckpoint, data_digests

    config = config if config is not None else TrainingConfig()
    if not isinstance(config, TrainingConfig):
        raise TypeError(f"config must be a TrainingConfig, got {type(config).__name__}")
    parallel = current(model.device)
    stream = _stream(model, x, theta, weights, score, reference, config) if isinstance(x, ParquetEvents) else None
    score_weight = _score_weight(score is not None or (stream is not None and stream.has_score), score_weight, config)
    if stream is not None:
        digests, low, high = stream.digests, stream.theta_low, stream.theta_high
        x_reference, weights_reference = stream.reference_x, stream.reference_weights
    else:
        if theta is None:
            raise ValueError("theta is missing: give the parameters of each event, shape (N, k)")
        x, theta, weights = _validated_inputs(model, x, theta, weights)
        score = _validated_score(model, score, x.shape[0])
        mask = _reference_mask(model, theta, reference)
        training_weights = _training_weights(weights, model.dtype)
        _check_split(training_weights, config)
        digests, low, high = data_digests(x, theta, weights, mask, score), theta.min(0).values, theta.max(0).values
        x_reference, weights_reference = x[mask], weights[mask]
    if score_weight:
        digests = {**digests, "score_weight": repr(score_weight)}
    checkpoint = TrainingCheckpoint(checkpoint_dir, model, digests, config) if checkpoint_dir else None
    projection = LatentProjection.fit(x_reference, model.observables, weights=weights_reference)
    # everything above only reads: a refused input leaves the model as it was
    model.set_theta_range(low, high)
    model.set_projection(projection)
    split = {"validation_fraction": config.validation_fraction, "seed": config.seed, "batch_size": config.batch_size}
    if stream is not None:
        events = WindowedEvents(stream, partial(_prepare_window, model, stream), **split)
    else:
        u = projection.forward(x, check=False)[:, list(model.order)]
        theta_scaled = model.scale_theta(theta.to(device=model.device, dtype=model.dtype)).cpu()  # as at inference
        device = {"dtype": model.dtype, "device": model.device}
        events = InMemoryEvents(u, theta_scaled, training_weights, score, **device, **split)
    trainer = _Trainer(model, events, config, parallel, score_weight)
    history = TrainingHistory(names=network_names(model))
    start_epoch = checkpoint.resume(trainer, history) if checkpoint else 0
    nan = float("nan")
    schedule = [list(range(trainer.d))] if config.joint else [[p] for p in range(trainer.d)]
    trained: list[int] = []
    bar = progress_bar(
        total=config.max_epochs * len(schedule), progress=progress and parallel.is_main, desc="training", unit="epoch"
    )
    try:
        for group in schedule:
            for epoch in range(start_epoch, config.max_epochs):
                positions = [p for p in group if trainer.active[p]]
                if not positions:
                    break
                if positions != trained:
                    trainer.train_networks(positions)
                    trained = positions
                tic = time.perf_counter()
                train_loss = dict(zip(positions, trainer.train_epoch(epoch, positions), strict=False))
                val_loss = dict(zip(positions, trainer.validation_loss(epoch, positions), strict=False))
                lrs = {p: trainer.optimizer.param_groups[p]["lr"] for p in positions}
                for p in positions:
                    trainer.update(epoch, p, val_loss[p])
                _record(history, epoch, train_loss, val_loss, lrs, time.perf_counter() - tic, nan)
                if trainer.score_weight:
                    history.score_loss.append(trainer.score_loss)
                history.best_epoch, history.best_val_loss = list(trainer.best_epoch), list(trainer.best)
                bar.update()
                bar.set_postfix(  # per member for an ensemble
                    train=f"{sum(train_loss.values()) / model.ensemble:.4f}",
                    val=f"{sum(val_loss.values()) / model.ensemble:.4f}",
                    lr=f"{max(lrs.values()):.1e}",
                    active=len(positions),
                )
                if checkpoint and parallel.is_main:
                    checkpoint.save(trainer, history, epoch)
                if callback is not None and parallel.any(bool(callback(epoch, history))):
                    history.interrupted = True
                    break
            if history.interrupted:
                break
    except KeyboardInterrupt:
        history.interrupted = True
        warn("training interrupted: the best weights so far are kept", GmmpyroWarning)
    finally:
        bar.close()
        trainer.finish()
        model.history = history
    logger.info("%r", history)
    return history


def _record(history: TrainingHistory, epoch, train_loss, val_loss, lrs, seconds, nan) -> None:
    """Write one network group's epoch into the history (rows are shared across groups)."""
    d = len(history.names)
    while len(history.val_loss) <= epoch:
        history.train_loss.append([nan] * d)
        history.val_loss.append([nan] * d)
        history.lr.append([nan] * d)
        history.epoch_time.append(0.0)
    for p in val_loss:
        history.train_loss[epoch][p] = train_loss[p]
        history.val_loss[epoch][p] = val_loss[p]
        history.lr[epoch][p] = lrs[p]
    history.epoch_time[epoch] += seconds
