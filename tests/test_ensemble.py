"""``DensityModel(ensemble=K)``: members trained together, combined as an equal mixture."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from gmmpyro import DensityModel, NetworkConfig, OutOfRangeWarning, TrainingConfig
from gmmpyro.mixture import mixture_log_prob
from gmmpyro.toy import ToyModel

TINY = NetworkConfig(n_gauss=4, A1=8, B1=8, B2=2, C=1, D=1, s_f=0.1, s_mu=0.1, s_sigma=0.1)
DESIGNS = [TINY, NetworkConfig(**{**TINY.to_dict(), "design": "amplitudes", "rank": 3})]
GRID = [[-1.0, -1.0], [-1.0, 1.0], [0.0, 0.0], [1.0, -1.0], [1.0, 1.0]]


def _data(n: int = 120, seed: int = 0):
    toy = ToyModel()
    theta = torch.tensor(GRID, dtype=torch.float64).repeat_interleave(n, 0)
    x, score = toy.simulate(theta, seed=seed, score=True)
    return toy, x, theta, score


def _single_and_ensemble(config: NetworkConfig, K: int, dtype=torch.float64):
    """A fresh single model and an ensemble of ``K`` copies of its initial networks."""
    toy = ToyModel()
    torch.manual_seed(0)
    single = DensityModel(toy.observables, toy.params, config=config, dtype=dtype)
    ensemble = DensityModel(toy.observables, toy.params, config=config, ensemble=K, dtype=dtype)
    d = len(toy.observables)
    for m in range(K):
        for position in range(d):
            ensemble.networks[m * d + position].load_state_dict(single.networks[position].state_dict())
    return single, ensemble


@pytest.mark.parametrize("config", DESIGNS, ids=["paper", "amplitudes"])
@pytest.mark.parametrize("with_score", [False, True], ids=["likelihood", "joint score"])
def test_members_trained_together_learn_exactly_what_each_learns_alone(config, with_score):
    # every member gets its own loss term, its own θ copy for the score and its own optimiser group:
    # copies of one model's initial weights must end where that model ends, step for step
    _, x, theta, score = _data()
    single, ensemble = _single_and_ensemble(config, K=2)
    settings = TrainingConfig(batch_size=100, max_epochs=3, seed=1)
    extra = {"score": score, "score_weight": 0.5} if with_score else {}
    single.fit(x, theta, config=settings, progress=False, **extra)
    ensemble.fit(x, theta, config=settings, progress=False, **extra)
    for m in range(2):
        member = ensemble.member(m)
        for a, b in zip(single.networks.state_dict().values(), member.networks.state_dict().values(), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert ensemble.history.names[:4] == ["x0[0]", "x1[0]", "x2[0]", "x3[0]"]
    if with_score:
        # the recorded score term is the members' mean, so identical members record the single model's
        assert ensemble.history.score_loss == pytest.approx(single.history.score_loss, rel=1e-9)


@pytest.mark.parametrize("config", DESIGNS, ids=["paper", "amplitudes"])
def test_an_ensemble_of_identical_members_equals_one_member(config):
    _, x, theta, _ = _data(60)
    single, ensemble = _single_and_ensemble(config, K=3)
    settings = TrainingConfig(batch_size=100, max_epochs=1)
    single.fit(x, theta, config=settings, progress=False)
    ensemble.fit(x, theta, config=settings, progress=False)
    points = torch.tensor([[0.3, -0.4], [0.9, 0.8]], dtype=torch.float64)[:, None]  # 2 1 k
    events = x[:50]
    torch.testing.assert_close(ensemble.log_prob(events, points), single.log_prob(events, points))
    torch.testing.assert_close(ensemble.prepare(events).log_prob(points[:, 0]), single.log_prob(events, points))


@pytest.mark.parametrize("config", DESIGNS, ids=["paper", "amplitudes"])
def test_the_mixture_its_members_and_the_prepared_path_agree(config):
    toy, x, theta, _ = _data(60)
    model = DensityModel(toy.observables, toy.params, config=config, ensemble=3, dtype=torch.float64)
    model.fit(x, theta, config=TrainingConfig(batch_size=100, max_epochs=2, bootstrap=True), progress=False)
    events = x[:40]
    point = torch.tensor([0.4, -0.7], dtype=torch.float64, requires_grad=True)
    members = model.member_log_prob(events, point)
    assert members.shape == (3, 40)
    assert (members.std(0) > 0).all(), "members started from different weights must differ"
    torch.testing.assert_close(model.log_prob(events, point), torch.logsumexp(members, 0) - math.log(3))
    for m in range(3):
        torch.testing.assert_close(members[m], model.member(m).log_prob(events, point))
    prepared = model.prepare(events)
    torch.testing.assert_close(prepared.member_log_prob(point), members)
    total = prepared.log_prob(point).sum()
    (fast,) = torch.autograd.grad(total, point)
    (general,) = torch.autograd.grad(model.log_prob(events, point).sum(), point)
    torch.testing.assert_close(fast, general)


def test_member_views_share_the_networks_and_the_sample_draws_from_every_member():
    toy, x, theta, _ = _data(60)
    torch.manual_seed(0)
    model = DensityModel(toy.observables, toy.params, config=TINY, ensemble=2, dtype=torch.float64)
    model.fit(x, theta, config=TrainingConfig(batch_size=100, max_epochs=1), progress=False)
    view = model.member(1)
    assert view.networks[0] is model.networks[len(toy.observables)]
    assert view.theta_bounds.tolist() == model.theta_bounds.tolist() and view.projection is model.projection
    with torch.no_grad():  # member 1's first observable moved by 60 % of the latent range: the members differ
        model.networks[len(toy.observables)].heads[1][-1].bias.add_(60.0)
    at = torch.tensor([[0.5, 0.5], [-0.5, 0.2]], dtype=torch.float64)
    draws = model.sample(3000, at, seed=3)
    assert draws.shape == (3000, 2, 4)
    torch.testing.assert_close(draws, model.sample(3000, at, seed=3))
    # the equal mixture by its definition: half the events from each member, at each θ
    reference = torch.cat([model.member(m).sample(1500, at, seed=10 + m) for m in range(2)])
    apart = stats.ks_2samp(model.member(0).sample(3000, at, seed=5)[:, 0, 0], reference[:, 0, 0]).statistic
    assert apart > 0.2  # so a draw from one member only would fail the test below
    def statistics(events):  # the observables, and differences of two that catch events mixed from several draws
        return [*events.T, events[:, 1] - events[:, 0], events[:, 3] - events[:, 2]]

    for j in range(2):
        for i, (got, want) in enumerate(zip(statistics(draws[:, j]), statistics(reference[:, j]), strict=True)):
            # two samples of 3000 from one distribution: p < 1e-3 once in a thousand (12 fixed-seed tests)
            assert stats.ks_2samp(got, want).pvalue > 1e-3, (j, i)


def test_an_ensemble_survives_save_and_load(tmp_path):
    toy, x, theta, _ = _data(40)
    model = DensityModel(toy.observables, toy.params, config=TINY, ensemble=2)
    model.fit(x, theta, config=TrainingConfig(batch_size=100, max_epochs=1), progress=False)
    model.save(tmp_path / "ensemble.gmm")
    loaded = DensityModel.load(tmp_path / "ensemble.gmm")
    assert loaded.ensemble == 2 and loaded.history.names == model.history.names
    point = torch.tensor([0.1, 0.2])
    torch.testing.assert_close(loaded.member_log_prob(x[:20], point), model.member_log_prob(x[:20], point))


def test_bootstrap_weights_change_what_each_member_sees_reproducibly():
    toy, x, theta, _ = _data(60)

    def fitted(bootstrap: bool, seed: int) -> DensityModel:
        torch.manual_seed(0)
        model = DensityModel(toy.observables, toy.params, config=TINY, ensemble=2, dtype=torch.float64)
        model.fit(x, theta, config=TrainingConfig(batch_size=100, max_epochs=2, bootstrap=bootstrap, seed=seed),
                  progress=False)  # fmt: skip
        return model

    point = torch.tensor([0.2, 0.2], dtype=torch.float64)
    plain, boot, again = fitted(False, 0), fitted(True, 0), fitted(True, 0)
    torch.testing.assert_close(boot.member_log_prob(x[:30], point), again.member_log_prob(x[:30], point))
    assert not torch.allclose(boot.member_log_prob(x[:30], point), plain.member_log_prob(x[:30], point))


def test_a_bootstrap_member_learns_what_a_model_learns_with_the_bootstrap_counts_as_weights():
    # each member's loss is Σ w b log p / Σ w b per batch: exactly weighted training with weights w·b. The
    # projection is fitted on events with b = 1 and the validation loss (unweighted there) decides nothing
    # in two epochs (no tolerance, no patience), so both runs must take the same steps.
    _, x, theta, _ = _data(60)
    counts = torch.poisson(torch.ones(len(x), 1, dtype=torch.float64), generator=torch.Generator().manual_seed(3))
    counts = counts[:, 0]  # the bootstrap weights of TrainingConfig(seed=2): a generator seeded with seed + 1
    single, ensemble = _single_and_ensemble(TINY, K=1)
    settings = TrainingConfig(batch_size=64, max_epochs=2, seed=2, lr_patience=5, tolerance=0.0)
    single.fit(x, theta, counts, reference=counts == 1, config=settings, progress=False)
    ensemble.fit(x, theta, reference=counts == 1, config=TrainingConfig(**{**settings.__dict__, "bootstrap": True}),
                 progress=False)  # fmt: skip
    assert ensemble.history.best_epoch == single.history.best_epoch == [1, 1, 1, 1]
    for a, b in zip(single.networks.state_dict().values(), ensemble.networks.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(torch.tensor(ensemble.history.train_loss), torch.tensor(single.history.train_loss))


def test_bad_ensemble_inputs_are_refused_with_clear_errors(tmp_path):
    toy = ToyModel()
    for bad in (0, -2, 1.5, True, "3"):
        with pytest.raises(ValueError, match="ensemble must be an integer >= 1"):
            DensityModel(toy.observables, toy.params, config=TINY, ensemble=bad)
    model = DensityModel(toy.observables, toy.params, config=TINY, ensemble=2)
    for bad in (2, -1, 0.0):
        with pytest.raises(ValueError, match=r"member index must be an integer in \[0, 2\)"):
            model.member(bad)
    with pytest.raises(ValueError, match=r"TrainingConfig\.bootstrap must be True or False"):
        TrainingConfig(bootstrap="yes")
    toy, x, theta, _ = _data(20)
    model.fit(x, theta, config=TrainingConfig(batch_size=50, max_epochs=1), progress=False)
    # the members draw at one θ row per event; the message names the caller's θ
    one_point = r"not finite at theta \[1\.0+\d*e\+30, 0\.0\]"
    with pytest.warns(OutOfRangeWarning), pytest.raises(ValueError, match=one_point):
        model.sample(5, [1e30, 0.0])

def test_the_components_of_an_ensemble_are_its_members_weighted_by_their_share():
    # p(u0) p(u1 | u0) from the ensemble's components equals the members' mean of p_m(u0) p_m(u1 | u0)
    toy, x, theta, _ = _data(60)
    model = DensityModel(toy.observables, toy.params, config=TINY, ensemble=3, dtype=torch.float64)
    model.fit(x, theta, config=TrainingConfig(batch_size=100, max_epochs=2), progress=False)
    point = torch.tensor([0.3, -0.6], dtype=torch.float64)
    u0 = torch.linspace(-4.5, 4.5, 7, dtype=torch.float64)[:, None, None]  # 7 1 1: u_prev of 7 × 5 points
    u1 = torch.linspace(-4.0, 4.0, 5, dtype=torch.float64)  # 5
    bounds = model.latent_range  # x0 and x1 are bounded: their Gaussians are truncated

    def factor(m, name, u, u_prev=None):
        comps = m.components(point, name, u_prev)
        return mixture_log_prob(u, comps.weights.log(), comps.means, comps.widths, bounds)

    ensemble = factor(model, "x0", u0[:, :, 0]) + factor(model, "x1", u1, u0)  # 7 5
    members = torch.stack([factor(m, "x0", u0[:, :, 0]) + factor(m, "x1", u1, u0)
                           for m in (model.member(i) for i in range(3))])  # fmt: skip
    torch.testing.assert_close(ensemble, torch.logsumexp(members, 0) - math.log(3))
    weights = model.components(point, "x1", u0).weights
    assert weights.shape == (7, 1, 3 * TINY.n_gauss)
    torch.testing.assert_close(weights.sum(-1), torch.ones(7, 1, dtype=torch.float64))
