"""Classifier two-sample test (C2ST) between model samples and reference events: :func:`c2st`."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .._results import Result, Table
from ._helpers import as_numpy, fmt

__all__ = ["C2ST", "ClassifierConfig", "c2st"]


@dataclass(frozen=True)
class ClassifierConfig:
    """The small MLP of :func:`c2st` and its training.

    Arguments:
        hidden: widths of the hidden layers (SiLU activations).
        epochs: passes over the training folds (no early stopping: over-fitting can only pull
            the held-out AUC towards 0.5, never above it).
        batch_size: events per Adam step.
        learning_rate: Adam's learning rate.
        weight_decay: L2 penalty (AdamW).

    Example:
        >>> ClassifierConfig(epochs=10).hidden
        (64, 64)
    """

    hidden: tuple[int, ...] = (64, 64)
    epochs: int = 30
    batch_size: int = 512
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` for settings that cannot train."""
        if not self.hidden or any(int(h) < 1 for h in self.hidden):
            raise ValueError(f"hidden must be a non-empty tuple of positive widths, got {self.hidden!r}")
        if self.epochs < 1 or self.batch_size < 1 or not self.learning_rate > 0 or self.weight_decay < 0:
            raise ValueError("epochs and batch_size must be >= 1, learning_rate > 0, weight_decay >= 0")


@dataclass(frozen=True, repr=False)
class C2ST(Result):
    """Result of :func:`c2st`: cross-validated AUC and accuracy of a classifier told to separate
    sample ``a`` (label 1) from sample ``b`` (label 0).

    ``AUC = accuracy = 0.5`` means indistinguishable; the null standard errors say how far
    from 0.5 chance alone takes them with these sample sizes.

    Attributes:
        auc: mean held-out ROC AUC over the folds, ``P(score(a) > score(b))``.
        auc_folds: per fold, shape ``(n_folds,)``.
        accuracy: fraction of all held-out events classified correctly (threshold at p = ½).
        accuracy_folds: per fold.
        n_per_class: events used from each sample (balanced).
        n_folds: number of cross-validation folds.
        auc_null_stderr: standard error of ``auc`` if both samples come from one distribution
            (Hanley–McNeil: ``√((2n + K)/(12 n²))`` for ``n`` per class and ``K`` folds).
        accuracy_null_stderr: binomial error ``½/√(2n)`` of ``accuracy`` under the same null.
        p_value: one-sided, ``P(AUC ≥ observed)`` under the null (normal approximation).
        features: names of the classifier inputs.
    """

    auc: float
    auc_folds: np.ndarray
    accuracy: float
    accuracy_folds: np.ndarray
    n_per_class: int
    n_folds: int
    auc_null_stderr: float
    accuracy_null_stderr: float
    p_value: float
    features: tuple[str, ...]

    _arrays = ("auc_folds", "accuracy_folds")

    @property
    def z(self) -> float:
        """``(AUC - ½)`` in units of its null standard error."""
        return (self.auc - 0.5) / self.auc_null_stderr

    def summary(self) -> dict:
        """Headline numbers."""
        return {
            "auc": self.auc,
            "auc_null_stderr": self.auc_null_stderr,
            "z": self.z,
            "p_value": self.p_value,
            "accuracy": self.accuracy,
            "accuracy_null_stderr": self.accuracy_null_stderr,
            "n_per_class": self.n_per_class,
        }

    def _table(self) -> Table:
        head = (
            f"C2ST: AUC {self.auc:.4f} ± {self.auc_null_stderr:.4f} (null s.e.), z = {self.z:.2f}, "
            f"p = {fmt(self.p_value, 3)}"
        )
        rows = [
            ("accuracy", f"{self.accuracy:.4f} ± {self.accuracy_null_stderr:.4f} (null s.e.)"),
            ("AUC per fold", ", ".join(f"{a:.4f}" for a in self.auc_folds)),
            ("events", f"{self.n_per_class} per class, {self.n_folds} folds"),
            ("features", ", ".join(self.features)),
        ]
        return Table(head, rows)


def _auc(score_a: np.ndarray, score_b: np.ndarray) -> float:
    """Mann–Whitney ``P(score_a > score_b) + ½ P(tie)``."""
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([score_a, score_b]))
    n_a, n_b = len(score_a), len(score_b)
    return float((ranks[:n_a].sum() - n_a * (n_a + 1) / 2) / (n_a * n_b))


def _linear(n_in: int, n_out: int, generator: torch.Generator) -> nn.Linear:
    """torch's default initialisation, drawn from ``generator``: the global RNG stays untouched."""
    layer = nn.utils.skip_init(nn.Linear, n_in, n_out, dtype=torch.float64)
    bound = 1.0 / math.sqrt(n_in)
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound, generator=generator)
        layer.bias.uniform_(-bound, bound, generator=generator)
    return layer


def _mlp(n_in: int, config: ClassifierConfig, generator: torch.Generator) -> nn.Sequential:
    layers, width = [], n_in
    for h in config.hidden:
        layers += [_linear(width, int(h), generator), nn.SiLU()]
        width = int(h)
    layers.append(_linear(width, 1, generator))
    return nn.Sequential(*layers)


def _fit_and_score(
    features: np.ndarray, labels: np.ndarray, train: np.ndarray, test: np.ndarray, config, generator
) -> np.ndarray:
    """Train on rows ``train``, return the logits of rows ``test``."""
    mean = features[train].mean(0)
    std = features[train].std(0)
    std = np.where(std > 0, std, 1.0)
    f = torch.from_numpy((features - mean) / std)  # M F
    y = torch.from_numpy(labels.astype(np.float64))
    net = _mlp(f.shape[1], config, generator)
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()
    train_t = torch.from_numpy(train)
    for _ in range(config.epochs):
        order = train_t[torch.randperm(len(train_t), generator=generator)]
        for start in range(0, len(order), config.batch_size):
            rows = order[start : start + config.batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss_fn(net(f[rows]).squeeze(-1), y[rows]).backward()
            optimizer.step()
    with torch.no_grad():
        return net(f[torch.from_numpy(test)]).squeeze(-1).numpy()


def c2st(
    x_a,
    x_b,
    *,
    theta_a=None,
    theta_b=None,
    names=None,
    n_folds: int = 5,
    max_events: int = 20_000,
    classifier: ClassifierConfig | None = None,
    seed: int = 0,
) -> C2ST:
    """Classifier two-sample test: can a small MLP tell sample ``a`` from sample ``b``?

    Both samples are cut to the same size ``n = min(N_a, N_b, max_events)`` (a seeded random
    subset), split into ``n_folds`` folds (the same split for both classes, so identical
    samples give exactly ``AUC = 0.5``); for each fold an MLP is trained on the others and
    scores the held-out events. Features are standardised with the training folds' mean and
    width. With ``theta_a``/``theta_b`` (the parameters each event was drawn at) the
    parameters join the features, so the test compares the conditional densities (draw the
    model events at the reference events' ``θ``).

    Reference: D. Lopez-Paz, M. Oquab, "Revisiting classifier two-sample tests", ICLR 2017,
    arXiv:1610.06545.

    Arguments:
        x_a: events of sample ``a`` (e.g. drawn from the model), shape ``(N_a, d)``.
        x_b: events of sample ``b`` (e.g. the reference), shape ``(N_b, d)``.
        theta_a, theta_b: parameters of the events, shapes ``(N_a, k)`` and ``(N_b, k)``.
        names: names of the ``d`` observables (then ``θ0, θ1, …`` for parameters).
        n_folds: cross-validation folds.
        max_events: most events used per sample.
        classifier: network and training settings.
        seed: seed of the subsets, the folds, the initial weights and the batch order.

    Returns:
        A :class:`C2ST`.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> a, b = rng.normal(size=(500, 2)), rng.normal(size=(500, 2))  # one distribution
        >>> same = c2st(a, b, classifier=ClassifierConfig(epochs=5))
        >>> abs(same.auc - 0.5) < 4 * same.auc_null_stderr
        True
    """
    from scipy.stats import norm

    config = classifier if classifier is not None else ClassifierConfig()
    a, b = as_numpy(x_a, "x_a", ndim=2), as_numpy(x_b, "x_b", ndim=2)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"x_a and x_b must have the same number of columns, got {a.shape[1]} and {b.shape[1]}")
    if (theta_a is None) != (theta_b is None):
        raise ValueError("give both theta_a and theta_b, or neither")
    if theta_a is not None:
        ta, tb = as_numpy(theta_a, "theta_a", ndim=2), as_numpy(theta_b, "theta_b", ndim=2)
        if len(ta) != len(a) or len(tb) != len(b) or ta.shape[1] != tb.shape[1]:
            raise ValueError(
                f"theta_a {ta.shape} and theta_b {tb.shape} must have one row per event of x_a {a.shape} "
                f"and x_b {b.shape} and the same number of parameters"
            )
        a, b = np.concatenate([a, ta], 1), np.concatenate([b, tb], 1)
    for what, s in (("x_a", a), ("x_b", b)):
        if not np.isfinite(s).all():
            raise ValueError(f"{what} (or its theta) contains NaN or inf")
    d = as_numpy(x_a, "x_a").shape[1]
    names = [f"x{i}" for i in range(d)] if names is None else [str(n) for n in names]
    if len(names) != d:
        raise ValueError(f"names must name the {d} observables, got {names}")
    features = tuple(names) + tuple(f"θ{i}" for i in range(a.shape[1] - d))
    n = min(len(a), len(b), int(max_events))
    if n_folds < 2 or n < 2 * n_folds:
        raise ValueError(f"need n_folds >= 2 and at least 2 events per class and fold, got {n} events, {n_folds} folds")

    rng = np.random.default_rng(seed)
    if len(a) == len(b):
        pick_a = pick_b = rng.permutation(len(a))[:n]
    else:
        pick_a, pick_b = rng.permutation(len(a))[:n], rng.permutation(len(b))[:n]
    data = np.concatenate([a[pick_a], b[pick_b]])  # 2n F
    labels = np.concatenate([np.ones(n), np.zeros(n)])
    fold_of = np.arange(n) % n_folds  # event j of a and event j of b share a fold
    generator = torch.Generator().manual_seed(int(seed))

    aucs, accs, correct = [], [], 0
    for k in range(n_folds):
        test_one = np.nonzero(fold_of == k)[0]
        train_one = np.nonzero(fold_of != k)[0]
        test = np.concatenate([test_one, n + test_one])
        train = np.concatenate([train_one, n + train_one])
        logits = _fit_and_score(data, labels, train, test, config, generator)
        m = len(test_one)
        aucs.append(_auc(logits[:m], logits[m:]))
        hits = int((logits[:m] > 0).sum() + (logits[m:] <= 0).sum())
        accs.append(hits / (2 * m))
        correct += hits
    auc = float(np.mean(aucs))
    auc_se = math.sqrt((2 * n + n_folds) / (12 * n * n))
    return C2ST(
        auc=auc,
        auc_folds=np.array(aucs),
        accuracy=correct / (2 * n),
        accuracy_folds=np.array(accs),
        n_per_class=n,
        n_folds=int(n_folds),
        auc_null_stderr=auc_se,
        accuracy_null_stderr=0.5 / math.sqrt(2 * n),
        p_value=float(norm.sf((auc - 0.5) / auc_se)),
        features=features,
    )
