import math
import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy import stats

import gmmpyro
from gmmpyro import DensityModel, NetworkConfig, Observable, OutOfRangeWarning, TrainingConfig
from gmmpyro.exceptions import results_checked_by_caller
from gmmpyro.mixture import log_normal_mass, mixture_log_prob
from gmmpyro.toy import ToyModel
from gmmpyro.training import split_indices

SMALL = NetworkConfig(
    n_gauss=6, A1=16, B1=16, B2=4, C=1, D=2, s_f=0.1, s_mu=0.1, s_sigma=0.1, categorical_widths=(32, 16)
)
DESIGNS = {
    "paper": SMALL,
    "lowrank": replace(SMALL, design="lowrank", rank=4),
    "amplitudes": replace(SMALL, design="amplitudes", rank=4),
    "film": replace(SMALL, design="film", film_width=8),
}
QUICK = TrainingConfig(batch_size=256, learning_rate=3e-3, max_epochs=4)
GRID = [[-1.0, -1.0], [-1.0, 1.0], [0.0, 0.0], [1.0, -1.0], [1.0, 1.0]]


def toy_data(n_per_point=400, seed=0):
    toy = ToyModel()
    x, theta = toy.grid_dataset(n_per_point, grid=GRID, seed=seed)
    return toy, x, theta


@pytest.fixture(scope="module", params=sorted(DESIGNS))
def trained(request):
    """A small model of each network design trained briefly on the toy, in float64 so gradients can be checked."""
    toy, x, theta = toy_data()
    torch.manual_seed(0)
    model = DensityModel(toy.observables, ["cx", "cy"], config=DESIGNS[request.param], dtype=torch.float64)
    model.fit(x, theta, config=QUICK, progress=False)
    return model, x, theta


def mixed_data(n, seed):
    """A continuous bounded column, an unbounded one depending on it, and a count."""
    rng = np.random.default_rng(seed)
    theta = rng.uniform(-1, 1, (n, 1))
    a = rng.beta(2 + theta[:, 0], 2, n)
    b = rng.normal(a + theta[:, 0], 0.5)
    p = 1 / (1 + np.exp(-2 * theta[:, 0]))
    count = rng.binomial(2, p)
    return torch.tensor(np.stack([a, b, count], 1)), torch.tensor(theta)


MIXED = [Observable("a", (0.0, 1.0)), Observable("b"), Observable("n", (0, 2), discrete=True)]


@pytest.fixture(scope="module", params=sorted(DESIGNS))
def mixed(request):
    x, theta = mixed_data(3000, seed=1)
    torch.manual_seed(0)
    model = DensityModel(MIXED, ["t"], config=DESIGNS[request.param], order=["n", "a", "b"], dtype=torch.float64)
    config = TrainingConfig(batch_size=256, learning_rate=3e-3, max_epochs=20)
    model.fit(x, theta, reference=torch.ones(3000, dtype=torch.bool), config=config, progress=False)
    return model


def test_parameter_count_matches_paper_network_sizes():
    # journal: with the toy constants the four networks hold about 18k-85k parameters each
    model = DensityModel(ToyModel().observables, ["cx", "cy"], config=gmmpyro.toy.paper_config())
    sizes = [sum(p.numel() for p in net.parameters()) for net in model.networks]
    assert 17_000 <= min(sizes) <= 19_000 and 84_000 <= max(sizes) <= 86_000


def factor_density(model, t: float, u_ordered: torch.Tensor, position: int) -> torch.Tensor:
    """The density of factor ``position`` at latent points ``u_ordered (M, d)`` (in the model's order)."""
    theta = model.scale_theta(torch.tensor([t], dtype=model.dtype))
    with torch.no_grad():
        factors = model.factor_log_probs(u_ordered, model.theta_features(theta), model.event_features(u_ordered))
    return factors[..., position].exp()


def integrate_factor(model, t: float, prefix: list[float], position: int, name: str, limits) -> float:
    """``∫ p(u_i | u_<i) du_i`` by 20-point Gauss-Legendre rules between breakpoints set by the components.

    A trained component may be far narrower than any fixed grid resolves (a Gaussian centred
    outside a bounded range leaves a spike of its tail at the bound, as narrow as ``σ²/distance``).
    Breakpoints at each component's centre and ±1, 2, 4, 8 widths (or, outside the range, at
    0.1-40 decay lengths from the bound) leave each interval a smooth piece of a few units
    of its narrowest component, which the rule integrates to ~1e-12.
    """
    with torch.no_grad():
        components = model.components(torch.tensor([t], dtype=model.dtype), name, u_prev=[prefix] if prefix else None)
    lo, hi = limits
    points = {lo, hi}
    for mean, width in zip(components.means.flatten().tolist(), components.widths.flatten().tolist(), strict=True):
        points.update(mean + width * f for f in (-8.0, -4.0, -2.0, -1.0, 0.0, 1.0, 2.0, 4.0, 8.0))
        for bound, sign in ((lo, 1.0), (hi, -1.0)):
            distance = sign * (bound - mean)
            if distance > 0:
                decay = min(width, width * width / distance)
                points.update(bound + sign * decay * f for f in (0.1, 1.0, 10.0, 40.0))
    edges = np.array(sorted(p for p in points if lo <= p <= hi))
    nodes, weights = np.polynomial.legendre.leggauss(20)
    half = 0.5 * np.diff(edges)[:, None]
    u = (0.5 * (edges[:-1] + edges[1:]))[:, None] + half * nodes  # intervals x nodes
    rows = torch.zeros(u.size, len(model.observables), dtype=model.dtype)
    rows[:, : len(prefix)] = torch.tensor(prefix, dtype=model.dtype)
    rows[:, len(prefix)] = torch.from_numpy(u.ravel())
    density = factor_density(model, t, rows, position).numpy().reshape(u.shape)
    return float((half * weights * density).sum())


def test_latent_normalisation_with_unbounded_and_discrete(mixed):
    """Each factor of the mixed model (a count, a bounded and an unbounded observable) integrates to 1.

    The model is the product of its factors, so the whole density is normalised if each
    conditional is, at every value of what precedes it: the count's probabilities are summed,
    the bounded factor is integrated over its latent range and the unbounded one over ±(40
    widths beyond its outermost components), at several conditioning values, by Gauss-Legendre
    quadrature (``integrate_factor``) to ~1e-12; the tolerance 1e-8 leaves room for its rounding.
    """
    for t in (-0.8, 0.3):
        counts = torch.tensor([[float(n), 0.0, 0.0] for n in range(3)], dtype=torch.float64)
        assert float(factor_density(mixed, t, counts, 0).sum()) == pytest.approx(1.0, abs=1e-12)
        for n in range(3):
            assert integrate_factor(mixed, t, [n], 1, "a", (-5.0, 5.0)) == pytest.approx(1.0, abs=1e-8)
            for a in (-4.99, -1.0, 0.5, 4.99):
                with torch.no_grad():
                    components = mixed.components(torch.tensor([t], dtype=torch.float64), "b", u_prev=[[n, a]])
                reach = 40 * float(components.widths.max())
                limits = (float(components.means.min()) - reach, float(components.means.max()) + reach)
                assert integrate_factor(mixed, t, [n, a], 2, "b", limits) == pytest.approx(1.0, abs=1e-8)


def test_data_space_normalisation_one_observable():
    toy = ToyModel()
    x, theta = toy.grid_dataset(500, grid=GRID, seed=3)
    model = DensityModel(toy.observables[:1], ["cx", "cy"], config=SMALL, dtype=torch.float64)
    model.fit(x[:, :1], theta, config=QUICK, progress=False)
    # the data-space density jumps at the projection's knots: integrate segment by segment
    knots = model.projection.x_knots_0
    inner = knots[:-1, None] + knots.diff()[:, None] * torch.linspace(0, 1, 17, dtype=knots.dtype)[1:-1]
    eps = 1e-9 * 700
    grid = torch.cat([inner.flatten(), knots[1:-1] - eps, knots[1:-1] + eps, knots[[0, -1]]]).sort().values
    with torch.no_grad():
        density = model.log_prob(grid[:, None], torch.tensor([0.4, -0.7])).exp()
    assert torch.trapezoid(density, grid).item() == pytest.approx(1.0, abs=1e-4)


def test_samples_follow_log_prob_per_conditional(trained):
    # probability-integral transform of every latent conditional of model samples must be
    # uniform; KS at alpha = 1e-3 with a fixed seed
    model, _, _ = trained
    theta = torch.tensor([0.5, -0.5], dtype=torch.float64)
    x = model.sample(3000, theta, seed=11)
    for i, obs in enumerate(model.observables):
        lo, hi = obs.bounds if obs.bounds else (-math.inf, math.inf)
        assert ((x[:, i] >= lo) & (x[:, i] <= hi)).all()
    u = model.projection.forward(x)
    with torch.no_grad():
        for i, obs in enumerate(model.observables):
            w, mu, sigma = model.components(theta.expand(3000, 2), obs.name, u[:, :i] if i else None)
            mu, sigma, ui = mu.numpy(), sigma.numpy(), u[:, i : i + 1].numpy()
            if obs.bounded:  # scipy's truncated normal also handles components centred far outside the range
                cdf = stats.truncnorm.cdf(ui, (-5 - mu) / sigma, (5 - mu) / sigma, loc=mu, scale=sigma)
            else:
                cdf = stats.norm.cdf(ui, loc=mu, scale=sigma)
            pit = (w.numpy() * cdf).sum(-1)
            assert stats.kstest(pit, "uniform").pvalue > 1e-3, obs.name


def test_log_prob_is_the_mixture_of_components(trained):
    model, x, _ = trained
    theta = torch.tensor([[0.2, 0.9]], dtype=torch.float64)
    with torch.no_grad():
        u = model.projection.forward(x[:50])
        total = model.log_prob(u, theta, space="latent")
        data = model.log_prob(x[:50], theta)
        expected = torch.zeros(50, dtype=torch.float64)
        for i, obs in enumerate(model.observables):
            w, mu, sigma = model.components(theta.expand(50, 2), i, u[:, :i] if i else None)
            bounds = (-5.0, 5.0) if obs.bounded else None
            expected += mixture_log_prob(u[:, i], w.log(), mu, sigma, bounds)
    torch.testing.assert_close(total, expected)
    torch.testing.assert_close(data - total, model.projection.log_abs_det_jacobian(x[:50]))


def test_broadcasting_shapes(trained):
    model, x, _ = trained
    thetas = torch.tensor([[0.0, 0.0], [0.5, -0.2], [-1.0, 1.0]], dtype=torch.float64)
    with torch.no_grad():
        grid = model.log_prob(x[:7], thetas[:, None, :])
        assert grid.shape == (3, 7)
        for g in range(3):
            torch.testing.assert_close(grid[g], model.log_prob(x[:7], thetas[g]))
        assert model.log_prob(x[:6].reshape(3, 1, 2, 4), thetas[:, None, :]).shape == (3, 3, 2)
        prepared = model.prepare(x[:7])
        torch.testing.assert_close(prepared.log_prob(thetas), grid, rtol=1e-6, atol=1e-6)
        assert prepared.log_prob(thetas.reshape(3, 1, 2)).shape == (3, 1, 7)
        assert model.prepare(x[:0]).log_prob(thetas).shape == (3, 0)
    assert model.sample(4, thetas.reshape(3, 1, 2), seed=0).shape == (4, 3, 1, 4)


def test_gradient_in_theta_matches_finite_differences(trained):
    model, x, _ = trained
    theta = torch.tensor([0.3, -0.4], dtype=torch.float64, requires_grad=True)
    value = model.log_prob(x[:20], theta).sum()
    (grad,) = torch.autograd.grad(value, theta)
    h = 1e-6
    for j in range(2):
        step = torch.zeros(2, dtype=torch.float64)
        step[j] = h
        with torch.no_grad():
            numeric = (
                model.log_prob(x[:20], theta + step).sum() - model.log_prob(x[:20], theta - step).sum()
            ) / (2 * h)
        assert grad[j].item() == pytest.approx(numeric.item(), rel=1e-5, abs=1e-6)
    prepared = model.prepare(x[:20])
    prepared_value = prepared.log_prob(theta).sum()
    torch.testing.assert_close(torch.autograd.grad(prepared_value, theta)[0], grad)
    hessians = [  # what a fit's Newton steps use: the prepared path's second derivatives too
        torch.autograd.functional.hessian(f, theta.detach())
        for f in (lambda t: prepared.log_prob(t).sum(), lambda t: model.log_prob(x[:20], t).sum())
    ]
    torch.testing.assert_close(*hessians)


def test_training_reduces_loss_and_keeps_best_epoch():
    toy, x, theta = toy_data(300, seed=4)
    torch.manual_seed(0)
    model = DensityModel(toy.observables, ["cx", "cy"], config=SMALL)
    # a large learning rate makes the validation loss bounce, so the last epoch is rarely the best
    config = TrainingConfig(batch_size=128, learning_rate=0.03, max_epochs=8, stop_patience=20, seed=2)
    history = model.fit(x, theta, config=config, progress=False)
    val = np.array(history.val_loss)
    assert (val.min(0) < val[0]).all()
    assert any(best != history.n_epochs - 1 for best in history.best_epoch)
    _, val_index = split_indices(x.shape[0], config.validation_fraction, config.seed)
    with torch.no_grad():
        u, _, _ = model.to_latent(x[val_index])
        theta_features = model.theta_features(model.scale_theta(theta[val_index].float()))
        factors = model.factor_log_probs(u, theta_features, model.event_features(u))
    # the kept weights are those of each network's best epoch: the last improvement larger than
    # the tolerance, so its loss is within the tolerance of the lowest one seen
    best = np.array(history.best_val_loss)
    np.testing.assert_allclose(-factors.mean(0).numpy(), best, rtol=1e-4)
    np.testing.assert_allclose(val[history.best_epoch, range(val.shape[1])], best)
    assert (best <= val.min(0) + config.tolerance).all()


def test_joint_and_sequential_training_agree():
    toy, x, theta = toy_data(200, seed=6)
    models = []
    for joint in (True, False):
        torch.manual_seed(0)
        model = DensityModel(toy.observables, ["cx", "cy"], config=SMALL, dtype=torch.float64)
        model.fit(x, theta, config=TrainingConfig(batch_size=128, max_epochs=3, joint=joint), progress=False)
        models.append(model)
    for (name, a), b in zip(models[0].state_dict().items(), models[1].state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10, msg=name)


def test_weights_act_like_duplicated_events():
    # weight 3 on events with x0' < 0.25 must fit the same density as tripling those events;
    # both must also reproduce the reweighted truth P_w(x0' < 0.25) = 3F / (3F + 1 - F)
    toy = ToyModel()
    x, theta = toy.grid_dataset(3000, grid=[[0.0, 0.0], [1.0, 0.0]], seed=8)
    x, theta = x[:, :1], theta[:, :1]
    low = x[:, 0] < 275.0
    weights = torch.where(low, 3.0, 1.0).double()
    duplicated_x = torch.cat([x, x[low], x[low]])
    duplicated_theta = torch.cat([theta, theta[low], theta[low]])
    config = TrainingConfig(batch_size=256, learning_rate=3e-3, max_epochs=25, stop_patience=4)
    fractions = []
    for data, th, w in ((x, theta, weights), (duplicated_x, duplicated_theta, None)):
        torch.manual_seed(0)
        model = DensityModel(toy.observables[:1], ["cx"], config=SMALL, dtype=torch.float64)
        model.fit(data, th, w, config=config, progress=False)
        grid = torch.linspace(100.0, 275.0, 4001, dtype=torch.float64)[:, None]
        with torch.no_grad():
            fractions.append(
                torch.trapezoid(model.log_prob(grid, torch.tensor([0.0])).exp(), grid[:, 0]).item()
            )
    k = 4.0
    f_true = (1 - math.exp(-k * 0.25)) / (1 - math.exp(-k))
    expected = 3 * f_true / (3 * f_true + 1 - f_true)
    # 3000 events at this point: binomial sd of the fraction ~ sqrt(p(1-p)/3000) ~ 0.009;
    # allow 3 sd plus 0.01 for the model's smoothing
    assert fractions[0] == pytest.approx(expected, abs=0.037)
    assert fractions[0] == pytest.approx(fractions[1], abs=0.02)


def test_discrete_observable(mixed):
    x, theta = mixed_data(4000, seed=9)
    sample = mixed.sample(4000, torch.tensor([0.5]), seed=1)
    assert set(sample[:, 2].unique().tolist()) <= {0.0, 1.0, 2.0}
    p = 1 / (1 + math.exp(-1.0))
    expected = [(1 - p) ** 2, 2 * p * (1 - p), p**2]
    observed = [(sample[:, 2] == n).double().mean().item() for n in range(3)]
    # 4000 draws: sd of each frequency <= 0.008; the fit on 3000 events adds ~0.02
    np.testing.assert_allclose(observed, expected, atol=0.05)
    bad = x[:3].clone()
    bad[:, 2] = 0.5
    assert torch.isneginf(mixed.log_prob(bad, theta[:3])).all()


def test_outside_support_is_minus_infinity(trained):
    model, x, _ = trained
    bad = x[:4].clone()
    bad[0, 0] = 99.0
    bad[1, 2] = 4.0
    with torch.no_grad():
        lp = model.log_prob(bad, torch.zeros(2))
    assert torch.isneginf(lp[:2]).all() and torch.isfinite(lp[2:]).all()


def test_bad_inputs_give_clear_errors(trained):
    model, x, theta = trained
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., 4\)"):
        model.log_prob(x[:, :3], torch.zeros(2))
    with pytest.raises(ValueError, match="NaN"):
        model.log_prob(torch.full((2, 4), float("nan")), torch.zeros(2))
    with pytest.raises(ValueError, match=r"theta must have shape \(\.\.\., 2\) for params \['cx', 'cy'\]"):
        model.log_prob(x[:2], torch.zeros(3))
    with pytest.warns(OutOfRangeWarning, match=r"\['cy'\]"):
        model.log_prob(x[:2], torch.tensor([0.0, 3.0]))
    with pytest.raises(ValueError, match="order names unknown observable 'x9'"):
        DensityModel(model.observables, ["cx", "cy"], order=["x9", "x0", "x1", "x2"])
    with pytest.raises(RuntimeError, match="not trained"):
        DensityModel(model.observables, ["cx", "cy"]).log_prob(x[:2], torch.zeros(2))
    fresh = DensityModel(model.observables, ["cx", "cy"], config=SMALL)
    bad = x.clone()
    bad[5, 1] = 900.0
    with pytest.raises(ValueError, match="'x1' lie outside its bounds"):
        fresh.fit(bad, theta, progress=False)
    with pytest.raises(ValueError, match="'cy' takes a single value"):
        fresh.fit(x, torch.stack([theta[:, 0], torch.zeros_like(theta[:, 0])], -1), progress=False)
    with pytest.raises(ValueError, match="weights must be finite, non-negative"):
        fresh.fit(x, theta, -torch.ones(len(x)), progress=False)
    with pytest.raises(ValueError, match="no training events at the reference point"):
        fresh.fit(x, theta, reference=[0.3, 0.3], progress=False)


def test_checkpoint_resume_and_interrupt(tmp_path):
    toy, x, theta = toy_data(200, seed=10)
    config = TrainingConfig(batch_size=128, max_epochs=4, stop_patience=50)

    def fresh():
        torch.manual_seed(1)
        return DensityModel(toy.observables, ["cx", "cy"], config=SMALL, dtype=torch.float64)

    straight = fresh()
    straight.fit(x, theta, config=config, progress=False)

    def stop_after_two(epoch, history):
        if epoch == 1:
            raise KeyboardInterrupt

    interrupted = fresh()
    with pytest.warns(gmmpyro.GmmpyroWarning, match="interrupted"):
        history = interrupted.fit(
            x, theta, config=config, progress=False, callback=stop_after_two, checkpoint_dir=tmp_path
        )
    assert history.interrupted and history.n_epochs == 2
    resumed = fresh()
    history = resumed.fit(x, theta, config=config, progress=False, checkpoint_dir=tmp_path)
    assert history.n_epochs == 4 and not history.interrupted
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    with pytest.raises(gmmpyro.TrainingError, match=r"belongs to other data or settings \(the training events x"):
        fresh().fit(x[:-10], theta[:-10], config=config, progress=False, checkpoint_dir=tmp_path)


def test_logsumexp_matches_torch_across_hundreds_of_nats():
    """The mixture's log-sum-exp (far terms floored at e^-80 of the largest) against torch's, float64."""
    from gmmpyro.mixture import _logsumexp

    torch.manual_seed(0)
    values = (200 * torch.randn(64, 20, dtype=torch.float64)).requires_grad_()
    torch.testing.assert_close(_logsumexp(values), torch.logsumexp(values, -1), rtol=0, atol=1e-13)
    ours, theirs = (
        torch.autograd.grad(f(values).sum(), values, create_graph=True)[0]
        for f in (_logsumexp, lambda v: torch.logsumexp(v, -1))
    )
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-13)
    probe = torch.arange(20.0, dtype=torch.float64)
    second = [torch.autograd.grad((g * probe).sum(), values)[0] for g in (ours, theirs)]  # Hessian-vector products
    torch.testing.assert_close(*second, rtol=0, atol=1e-12)
    special = torch.tensor([[-math.inf, -math.inf], [math.inf, 0.0], [-math.inf, 3.0]], dtype=torch.float64)
    torch.testing.assert_close(_logsumexp(special), torch.logsumexp(special, -1))


@pytest.mark.parametrize("case", ["one component", "narrow favourite"])
def test_amplitudes_fast_path_falls_back_where_its_sum_underflows(case):
    """The second factor's weights on components where the events are not: the one-exp sum overflows.

    "one component": all weight (500 nats) on one component; "narrow favourite": 40 nats on a
    component of width ε, -70 on the others: weights 110 nats above the events' best component's,
    beyond float32's range of ``exp2``.
    """
    toy, x, theta = toy_data(100)
    torch.manual_seed(0)
    model = DensityModel(toy.observables, ["cx", "cy"], config=DESIGNS["amplitudes"])  # float32: e^-71 underflows
    model.fit(x, theta, config=replace(QUICK, max_epochs=1), progress=False)
    config = model.config
    rank, n_gauss = config.rank, config.n_gauss
    last = model.networks[1].event_net[-1]
    weight, bias = last.weight.view(rank + 3, n_gauss, -1), last.bias.view(rank + 3, n_gauss)
    with torch.no_grad():  # rows 0..rank: logit features (row rank pairs with θ's constant 1); rank + 2: widths
        weight[: rank + 1] = 0.0
        bias[: rank + 1] = 0.0
        if case == "one component":
            bias[rank, 0] = 500.0 / config.s_f
        else:
            bias[rank] = -70.0 / config.s_f
            bias[rank, 0] = 40.0 / config.s_f
            weight[rank + 2, 0] = 0.0
            bias[rank + 2, 0] = -30.0 / config.s_sigma  # width ε
    grid = torch.tensor([[0.2, -0.3], [-0.9, 0.6]], requires_grad=True)
    prepared = model.prepare(x[:200]).log_prob(grid)
    direct = model.log_prob(x[:200], grid[:, None])
    assert (direct < -100).any()  # events deep in the tail of the favoured components
    assert torch.isfinite(prepared).all()
    torch.testing.assert_close(prepared, direct, rtol=1e-5, atol=1e-3)
    gradients = [torch.autograd.grad(lp.sum(), grid)[0] for lp in (prepared, direct)]
    assert torch.isfinite(gradients[0]).all()
    torch.testing.assert_close(*gradients, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("case", ["trained", "means outside", "one wide"])
def test_amplitudes_gradient_by_hand_matches_the_general_path(case):
    """The prepared amplitudes path's θ-gradient, by hand on the CPU: against the general path, float64.

    "means outside": the first factor's end Gaussians centred 2 below and above the latent
    range (the normalisation's interval reflected); "one wide": a component 10⁶ times wider than
    the range, whose gradient autograd takes over. One θ far outside the training range.
    """
    from gmmpyro import lowrank
    from gmmpyro.lowrank import _AmplitudesLogProb

    toy, x, theta = toy_data(100)
    torch.manual_seed(0)
    model = DensityModel(toy.observables, ["cx", "cy"], config=DESIGNS["amplitudes"], dtype=torch.float64)
    model.fit(x, theta, config=replace(QUICK, max_epochs=1), progress=False)
    config, first = model.config, model.networks[0]
    rank, n_gauss = config.rank, config.n_gauss
    with torch.no_grad():  # the event constant's row `rank` pairs with θ's constant 1; columns: logits, means, widths
        if case == "means outside":
            first.event_constant[rank, n_gauss] = -2.0 / config.s_mu
            first.event_constant[rank, 2 * n_gauss - 1] = 2.0 / config.s_mu
        elif case == "one wide":
            first.event_constant[rank, 2 * n_gauss + 3] = (math.log(1e7) - first.log_width0) / config.s_sigma
    events = x[:300]
    grid = torch.tensor([[0.2, -0.3], [-0.9, 0.6], [3.0, -4.0]], dtype=torch.float64, requires_grad=True)
    prepared = model.prepare(events)
    scaled = model.scale_theta(grid.detach()).requires_grad_()
    assert prepared._stacked[0].log_prob(scaled).grad_fn.name() == "_AmplitudesLogProbBackward"
    parts, _, _ = _AmplitudesLogProb.parts(prepared._stacked[0], scaled.detach())
    assert (parts is None) == (case == "one wide")
    with pytest.warns(OutOfRangeWarning):
        values = [prepared.log_prob(grid), model.log_prob(events, grid[:, None])]
    torch.testing.assert_close(*values, rtol=1e-10, atol=1e-10)
    gradients = [torch.autograd.grad(v.sum(), grid)[0] for v in values]
    torch.testing.assert_close(*gradients, rtol=1e-9, atol=1e-9)
    if case == "trained":  # a batch this large runs the later factors' backward product transposed
        many = torch.rand(16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 2 - 1
        assert len(many) >= lowrank._TRANSPOSED_PRODUCT_FROM
        many.requires_grad_()
        pair = [prepared.log_prob(many), model.log_prob(events, many[:, None])]
        pair_gradients = [torch.autograd.grad(v.sum(), many)[0] for v in pair]
        torch.testing.assert_close(*pair_gradients, rtol=1e-9, atol=1e-9)
    with results_checked_by_caller():
        hessians = [  # a fit's Newton steps: second derivatives through the same path
            torch.autograd.functional.hessian(f, grid[0].detach())
            for f in (lambda t: prepared.log_prob(t).sum(), lambda t: model.log_prob(events, t).sum())
        ]
    torch.testing.assert_close(*hessians, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("bounds", [None, (-5.0, 5.0)])
def test_mixture_at_points_matches_mixture_log_prob_and_gradcheck(bounds):
    """The first factor's hand-written gradient: values against the general path, gradients by gradcheck.

    Widths from 1e-3 to 1e9 (far beyond the truncation interval: its uniform limit), weights
    spread over 300 nats (far terms floored), float64.
    """
    from gmmpyro.mixture import mixture_at_points

    torch.manual_seed(1)
    u = torch.linspace(-4.9, 4.9, 7, dtype=torch.float64)
    log_weights = torch.log_softmax(60 * torch.randn(3, 5, dtype=torch.float64), -1).requires_grad_()
    means = (3 * torch.randn(3, 5, dtype=torch.float64)).requires_grad_()
    widths = torch.tensor([1e-3, 0.3, 1.0, 4.0, 1e9], dtype=torch.float64).repeat(3, 1).requires_grad_()
    ours = mixture_at_points(u, log_weights, means, widths, bounds)
    general = mixture_log_prob(u[None], log_weights[:, None], means[:, None], widths[:, None], bounds)
    torch.testing.assert_close(ours, general, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(lambda *p: mixture_at_points(u, *p, bounds), (log_weights, means, widths))
    points = u.clone().requires_grad_()  # the points too (the model's own are fixed events)
    assert torch.autograd.gradcheck(lambda v: mixture_at_points(v, log_weights, means, widths, bounds), (points,))
    # a fit's Hessian, where the inputs are computed from one another (as all are from θ)
    def coupled(density):
        def total(m):
            return density(log_weights.detach() + m.sin(), m, widths.detach() * m.cos().exp()).sum()

        return torch.autograd.functional.hessian(total, means.detach())

    hessians = [
        coupled(lambda *p: mixture_at_points(u, *p, bounds)),
        coupled(lambda w, m, s: mixture_log_prob(u[None], w[:, None], m[:, None], s[:, None], bounds)),
    ]
    torch.testing.assert_close(*hessians, rtol=1e-10, atol=1e-10)
    no_weight = torch.full((1, 2), -math.inf, dtype=torch.float64, requires_grad=True)
    nothing = mixture_at_points(u, no_weight, means[:1, :2], widths[:1, :2])
    assert (nothing == -math.inf).all()  # all weights zero: -inf, as torch.logsumexp gives
    assert not torch.autograd.grad(nothing.sum(), no_weight)[0].any()  # a constant: no gradient


@pytest.mark.parametrize("case", ["near", "dropped", "far"])
def test_mixture_at_points_bound_and_exact_paths(case, monkeypatch):
    """The shares relative to the bound ``max a``: events near the components ("near"), or near one
    and ~20 000 nats from the others, whose terms are dropped ("dropped"); and where an event's best
    term lies ~200 nats below that bound ("far"), relative to its largest term. All exact, float64."""
    from gmmpyro import mixture

    calls = []
    exact_path = mixture._floored_logsumexp
    monkeypatch.setattr(mixture, "_floored_logsumexp", lambda *a: calls.append(1) or exact_path(*a))
    torch.manual_seed(3)
    u = torch.linspace(-2.0, 2.0, 9, dtype=torch.float64)
    width = 0.4
    if case == "far":
        u = torch.cat([u, torch.tensor([10.0], dtype=torch.float64)])  # 20 σ from every mean
    elif case == "dropped":
        u, width = torch.tensor([-2.01, -1.98, 2.0, 2.02], dtype=torch.float64), 0.02  # 200 σ from the other mean
    log_weights = torch.log_softmax(torch.randn(3, 4, dtype=torch.float64), -1).requires_grad_()
    means = (torch.linspace(-2.0, 2.0, 4, dtype=torch.float64) + 0.1 * torch.randn(3, 4, dtype=torch.float64))
    if case == "dropped":
        means = 2.0 * torch.tensor([-1.0, -1.0, 1.0, 1.0], dtype=torch.float64)
        means = means + 0.01 * torch.randn(3, 4, dtype=torch.float64)
    means = means.requires_grad_()
    widths = torch.full((3, 4), width, dtype=torch.float64).requires_grad_()
    ours = mixture.mixture_at_points(u, log_weights, means, widths)
    assert len(calls) == (1 if case == "far" else 0)
    general = mixture_log_prob(u[None], log_weights[:, None], means[:, None], widths[:, None])
    torch.testing.assert_close(ours, general, rtol=1e-12, atol=1e-12)
    grads = [torch.autograd.grad(v.sum(), (log_weights, means, widths)) for v in (ours, general)]
    for got, expected in zip(*grads, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


def test_amplitude_sums_derivatives_in_float32_with_large_logits():
    """A weight 2^100 times the best component's (in range, not lost): the autograd twin's first and
    second derivatives (a fit's Hessian) match float64 in float32, where the sums squared would overflow.

    Tolerance 1e-6: the derivative is a difference of terms of order 1 (a few float32 ulps, 1.2e-7).
    """
    from gmmpyro.lowrank import _AmplitudeSums

    def derivatives(dtype):
        logits = torch.tensor([0.0, 100.0, -5.0, 20.0], dtype=dtype).view(1, 1, 4, 1).requires_grad_()  # in bits
        components = torch.tensor([1.0, 1e-25, 0.5, 1e-3], dtype=dtype).view(1, 1, 4, 1)
        value, lost = _AmplitudeSums.apply(logits, components, torch.finfo(dtype).tiny / torch.finfo(dtype).eps)
        assert not lost.any()
        (first,) = torch.autograd.grad(value.sum(), logits, create_graph=True)
        second = [torch.autograd.grad(first.flatten()[i], logits, retain_graph=True)[0].flatten() for i in range(4)]
        return first.detach().flatten().double(), torch.stack(second).double()

    (first32, second32), (first64, second64) = derivatives(torch.float32), derivatives(torch.float64)
    assert first64.abs().max() > 1e-6 and second64.abs().max() > 1e-6  # not trivially small
    torch.testing.assert_close(first32, first64, rtol=0, atol=1e-6)
    torch.testing.assert_close(second32, second64, rtol=0, atol=1e-6)


def test_amplitude_sums_gradcheck():
    """The later factors' hand-written gradient against finite differences, float64, ratios over 40 nats."""
    from gmmpyro.lowrank import _AmplitudeSums

    torch.manual_seed(2)
    logits = (15 * torch.randn(2, 3, 6, 4, dtype=torch.float64)).requires_grad_()  # in bits
    components = torch.rand(2, 1, 6, 4, dtype=torch.float64) ** 8
    value, lost = _AmplitudeSums.apply(logits, components, 1e-300)
    nats = math.log(2.0) * logits
    exact = torch.logsumexp(nats + components.log(), 2) - torch.logsumexp(nats, 2)
    assert not lost.any()
    torch.testing.assert_close(value, exact, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(lambda v: _AmplitudeSums.apply(v, components, 1e-300)[0], (logits,))
    assert torch.autograd.gradgradcheck(lambda v: _AmplitudeSums.apply(v, components, 1e-300)[0], (logits,))


def test_log_normal_mass_tails():
    a = torch.tensor([-50.0, 40.0, -1.0, -8.0], dtype=torch.float64)
    b = torch.tensor([-45.0, 41.0, 1.0, 8.0], dtype=torch.float64)
    exact = [
        stats.norm.logcdf(-45.0) + math.log1p(-math.exp(stats.norm.logcdf(-50.0) - stats.norm.logcdf(-45.0))),
        stats.norm.logsf(40.0) + math.log1p(-math.exp(stats.norm.logsf(41.0) - stats.norm.logsf(40.0))),
        math.log(stats.norm.cdf(1) - stats.norm.cdf(-1)),
        math.log(stats.norm.cdf(8) - stats.norm.cdf(-8)),
    ]
    np.testing.assert_allclose(log_normal_mass(a, b).numpy(), exact, rtol=1e-10, atol=1e-14)


def test_log_normal_mass_across_both_regimes_and_dtypes():
    from scipy.special import log_ndtr

    # intervals of width 0.01-30 placed from far left to far right, straddling the Φ⁻¹ = -5 switch
    g = np.random.default_rng(0)
    a = g.uniform(-60.0, 60.0, 4000)
    b = a + np.exp(g.uniform(np.log(0.01), np.log(30.0), 4000))
    lo, hi = np.where(a > 0, -b, a), np.where(a > 0, -a, b)  # the side where Φ is small
    exact = log_ndtr(hi) + np.log1p(-np.exp(log_ndtr(lo) - log_ndtr(hi)))
    at = torch.tensor(a, requires_grad=True)
    got = log_normal_mass(at, torch.tensor(b))
    np.testing.assert_allclose(got.detach().numpy(), exact, rtol=1e-9, atol=1e-12)
    (grad,) = torch.autograd.grad(got.sum(), at)
    assert torch.isfinite(grad).all()
    near = (a <= 0) & (b >= -8)  # scored alone, these take the unreflected path
    alone = log_normal_mass(torch.tensor(a[near]), torch.tensor(b[near]))
    np.testing.assert_allclose(alone.numpy(), exact[near], rtol=1e-9, atol=1e-12)
    # float32: within a few float32 ulps of the magnitude (plus the rounding of a and b themselves)
    got32 = log_normal_mass(torch.tensor(a, dtype=torch.float32), torch.tensor(b, dtype=torch.float32))
    scale = np.maximum(np.abs(exact), 1.0) * (1.0 + np.abs(a) + np.abs(b))
    assert (np.abs(got32.double().numpy() - exact) <= 1e-5 * scale).all()


def test_truncated_mixture_of_wide_components_against_mpmath():
    """σ from 0.1 to inf on [-5, 5] (far extrapolation gives such widths): finite, exact and normalised."""
    import mpmath

    mpmath.mp.dps = 50
    sigma = np.array([0.1, 3.0, 1e3, 1e5, 2e5, 8.3e5, 1e7, 1e12, 1e30])  # around (hi - lo)/σ = (8ε)^⅓
    mu = np.array([0.3, -7.0, 40.0, -2e5, 3e5, 1e6, 5e12, -1e12, 1e3])
    u = np.array([1.0, -4.0, 4.9, 0.0, -4.99, 2.0, -1.0, 3.0, 0.5])

    def exact(u, m, s):
        mass = mpmath.ncdf((5 - m) / s) - mpmath.ncdf((-5 - m) / s)
        return float(mpmath.log(mpmath.npdf(u, m, s) / mass))

    expected = [exact(mpmath.mpf(a), mpmath.mpf(m), mpmath.mpf(s)) for a, m, s in zip(u, mu, sigma, strict=True)]
    mu_t = torch.tensor(mu, requires_grad=True)
    got = mixture_log_prob(torch.tensor(u), torch.zeros(9, 1, dtype=torch.float64), mu_t[:, None],
                           torch.tensor(sigma)[:, None], (-5.0, 5.0))  # fmt: skip
    # float64 cancellation in Φ(b) - Φ(a) and the truncated series each err by ~1e-11 at the switch
    np.testing.assert_allclose(got.detach().numpy(), expected, rtol=1e-9, atol=1e-9)
    (grad,) = torch.autograd.grad(got.sum(), mu_t)
    assert torch.isfinite(grad).all()
    zero = torch.zeros(1, 1, dtype=torch.float64)
    infinite = mixture_log_prob(torch.tensor([0.5]), zero, zero, torch.full((1, 1), math.inf), (-5.0, 5.0))
    assert float(infinite) == pytest.approx(-math.log(10.0), abs=1e-15)  # σ = inf: uniform on [-5, 5]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_sampling_components_centred_far_outside_the_range(dtype):
    """Components 10-280 widths outside ``[-5, 5]`` (either side): draws follow their truncated tails.

    There ``Φ`` at both ends underflows (or keeps no precision); the draws must spread over the
    tail's decay length ``σ²/distance`` instead of sitting on the bound. 4 000 draws per
    component: a KS test of the scipy truncated-normal CDF of the draws at α = 1e-3 (fixed seed).
    """
    from gmmpyro.mixture import sample_mixture

    means = torch.tensor([-9.5, 13.2, -5.9, 5.1 + 10 * 0.01], dtype=torch.float64)
    widths = torch.tensor([0.016, 0.023, 0.09, 0.01], dtype=torch.float64)
    n = 4000
    generator = torch.Generator().manual_seed(3)
    for mean, width in zip(means.tolist(), widths.tolist(), strict=True):
        mu, sigma = torch.full((n, 1), mean, dtype=dtype), torch.full((n, 1), width, dtype=dtype)
        draws = sample_mixture(torch.zeros(n, 1, dtype=dtype), mu, sigma, (-5.0, 5.0), generator).double().numpy()
        assert ((draws >= -5.0) & (draws <= 5.0)).all()
        a, b = (-5.0 - mean) / width, (5.0 - mean) / width
        cdf = stats.truncnorm.cdf(draws, a, b, loc=mean, scale=width)
        assert stats.kstest(cdf, "uniform").pvalue > 1e-3, (mean, width, dtype)


def test_far_extrapolation_gives_finite_log_prob(trained):
    """Far outside the training range the network's widths overflow; log p stays finite."""
    model, x, _ = trained
    with pytest.warns(OutOfRangeWarning):
        lp = model.log_prob(x[:50], torch.tensor([[30.0, 0.0], [60.0, 0.0], [1e4, 0.0], [0.0, -1e3]])[:, None])
    assert torch.isfinite(lp[:2]).all()  # widths up to ~1e150: truncated factors near their uniform limit
    assert not lp.isnan().any() and not lp.isposinf().any()  # infinite widths: an untruncated factor gives -inf


def test_no_warning_inside_range(trained):
    model, x, _ = trained
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.log_prob(x[:3], torch.tensor([1.0, -1.0]))


def test_out_of_range_warning_points_at_the_users_line(trained):
    """Direct, through the Pyro distribution and through a sampling call: the warning names this file."""
    model, x, _ = trained
    outside = torch.tensor([0.0, 3.0])
    calls = [
        lambda: model.log_prob(x[:2], outside),
        lambda: model.distribution(outside).log_prob(x[:2]),
        lambda: model.sample(2, outside, seed=0),
    ]
    for call in calls:
        with pytest.warns(OutOfRangeWarning) as record:
            call()
        assert {w.filename for w in record} == {__file__}


def test_projection_uses_all_events_when_theta_is_off_grid():
    """θ drawn from a prior (every event its own point): the default reference is every event."""
    toy = ToyModel()
    generator = torch.Generator().manual_seed(3)
    theta = torch.rand(2000, 2, generator=generator, dtype=torch.float64) * 2 - 1
    x = toy.sample(1, theta, seed=4)[0]  # one event per θ: 2000 d
    model = DensityModel(toy.observables, ["cx", "cy"], config=SMALL)
    model.fit(x, theta, config=TrainingConfig(max_epochs=1), progress=False)
    pooled = gmmpyro.LatentProjection.fit(x, toy.observables)
    torch.testing.assert_close(model.projection.forward(x[:100]), pooled.forward(x[:100]))
