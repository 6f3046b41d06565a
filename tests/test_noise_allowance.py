"""``noise_allowance`` (k): each obedience hinge on a batch estimate fires at ``C_hat < epsilon - k SE`` instead of
``C_hat < epsilon``, with SE the estimate's batch standard error."""
import pytest
import torch

from msgzoo.envs import recommendation_letter
from msgzoo.objectives import ObedienceConstraintLoss
from msgzoo.runtime.config_validation import validate_config
from msgzoo.training.config_schema import ConfigError
from recipes import build_method
from msgzoo.pipelines import one_step
from test_objectives import F64, U_RECEIVER, W_RECEIVER_KEY, collect, tabular_modules

PHI2 = torch.tensor([[0.7, 0.3], [0.2, 0.8]], dtype=F64)
PI2 = torch.tensor([[0.9, 0.1], [0.35, 0.65]], dtype=F64)
# epsilon where one pair's hinge is active on this scheme (C_hat = 0.227, 0.029); the uniform estimate (0.246) needs more
LAMBDA, EPS, EPS_UNIFORM = 20.0, 0.05, 0.3


def _batch(seed=0):
    scheme, receiver, critic = tabular_modules(PHI2, PI2, U_RECEIVER, w_key=W_RECEIVER_KEY)
    torch.manual_seed(seed)
    return scheme, receiver, critic, collect(recommendation_letter(num_envs=2048, seed=seed), scheme, receiver)


def _per_state_terms(batch):
    """``d[t, k, l] = phi(k|s_t) (q[t, k] - q[t, l])`` with ``q[t, k] = sum_a pi(a|k) W^j(s_t, a)``, directly."""
    s = batch["sender", "state"].reshape(-1)
    phi, q = PHI2[s], U_RECEIVER[s] @ PI2.T  # [T, K], [T, K]
    return phi[:, :, None] * (q[:, :, None] - q[:, None, :]), phi, q


def _loss(modules, **kwargs):
    scheme, receiver, critic = modules
    kwargs = dict(counterfactual="all", gamma=0.0, lagrange_multiplier=LAMBDA, epsilon=EPS) | kwargs
    return ObedienceConstraintLoss(scheme, receiver, critic, **kwargs)


@pytest.mark.parametrize("mode, counterfactual", [("lagrangian", "all"), ("lagrangian", "uniform"),
                                                  ("stringent", "all"), ("stringent", "uniform")])
def test_zero_allowance_is_the_default_loss(mode, counterfactual):
    *modules, batch = _batch()
    outs = []
    for kwargs in ({}, {"noise_allowance": 0.0}):
        loss = _loss(modules, mode=mode, counterfactual=counterfactual, epsilon=EPS_UNIFORM, **kwargs)
        torch.manual_seed(1)  # the uniform counterfactual draws sigma'
        out = loss(batch)
        scheme_param = next(loss.scheme_network.parameters())
        (grad,) = torch.autograd.grad(out["loss_obedience"], scheme_param)
        outs.append((out["loss_obedience"].detach(), grad))
    assert outs[0][0] > 0  # the hinges are active: the comparison is not 0 == 0
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])


def test_standard_error_matches_the_per_state_terms():
    """Three seeds of random schemes and message values: each seed's SE is torch.std of its own terms / sqrt(N)."""
    gen = torch.Generator().manual_seed(0)
    seeds, n, k = 3, 257, 4
    phi = torch.softmax(torch.randn(seeds, n, k, generator=gen, dtype=F64), -1)
    q = torch.randn(seeds, n, k, generator=gen, dtype=F64) * torch.tensor([0.5, 1.0, 2.0], dtype=F64)[:, None, None]
    scheme, receiver, critic = tabular_modules(PHI2, PI2, U_RECEIVER, w_key=W_RECEIVER_KEY)
    loss = ObedienceConstraintLoss(scheme, receiver, critic, counterfactual="all", ensemble_shape=(seeds,),
                                   noise_allowance=1.0)
    got = loss._pairwise_standard_error(phi, q)
    d = phi[..., :, None] * (q[..., :, None] - q[..., None, :])  # [seeds, n, k, k]
    expected = d.std(dim=1) / n**0.5
    off = ~torch.eye(k, dtype=torch.bool)  # the pairs (the diagonal, an exact-zero estimate, is never used)
    torch.testing.assert_close(got[:, off], expected[:, off], rtol=1e-9, atol=0.0)
    assert not torch.allclose(expected[0], expected[2])  # the seeds' SEs differ: none is pooled


@pytest.mark.parametrize("mode", ["lagrangian", "stringent"])
def test_the_allowance_shifts_each_pairs_hinge(mode):
    """counterfactual='all': lambda * relu(eps - k SE - C_hat) per pair (summed: lagrangian; mean: stringent)."""
    *modules, batch = _batch()
    d, _, _ = _per_state_terms(batch)
    n = d.shape[0]
    off = ~torch.eye(2, dtype=torch.bool)
    c_hat, se = d.mean(0)[off], (d.std(0) / n**0.5)[off]
    k = 1.645
    reduce = torch.sum if mode == "lagrangian" else torch.mean
    plain = _loss(modules, mode=mode)(batch)["loss_obedience"].detach().to(F64)
    shifted = _loss(modules, mode=mode, noise_allowance=k)(batch)["loss_obedience"].detach().to(F64)
    torch.testing.assert_close(plain, LAMBDA * reduce(torch.relu(EPS - c_hat)), rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(shifted, LAMBDA * reduce(torch.relu(EPS - k * se - c_hat)), rtol=1e-4, atol=1e-7)
    assert 0 < shifted < plain


def test_the_allowance_shifts_the_uniform_estimates_hinge():
    """counterfactual='uniform' with two messages (sigma' is the other one): lambda * relu(eps - k SE - mean c_t)."""
    *modules, batch = _batch()
    d, phi, q = _per_state_terms(batch)
    sent = batch["sender", "message"].reshape(-1, 2).argmax(-1)
    c = d[torch.arange(sent.numel()), sent, 1 - sent]  # c_t of eq. 6
    k = 2.0
    shifted = _loss(modules, counterfactual="uniform", epsilon=EPS_UNIFORM, noise_allowance=k)(batch)[
        "loss_obedience"].detach().to(F64)
    expected = LAMBDA * torch.relu(EPS_UNIFORM - k * c.std() / c.numel() ** 0.5 - c.mean())
    assert expected > 0
    torch.testing.assert_close(shifted, expected, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("field", ["noise_allowance", "smoothing"])
@pytest.mark.parametrize("kwargs", [dict(mode="dual"), dict(mode="dual_pairwise"),
                                    dict(mode="stringent", counterfactual="uniform")])
def test_a_mode_without_a_hinge_on_an_estimate_fails(kwargs, field):
    """Both act on a hinge on a batch estimate; a negative value fails too."""
    scheme, receiver, critic = tabular_modules(PHI2, PI2, U_RECEIVER, w_key=W_RECEIVER_KEY)
    with pytest.raises(ValueError, match=f"{field}=1.0 is invalid"):
        _loss((scheme, receiver, critic), num_messages=2, **{field: 1.0}, **kwargs)
    with pytest.raises(ValueError, match=f"{field}=-0.5 is invalid"):
        _loss((scheme, receiver, critic), **{field: -0.5})


@pytest.mark.parametrize("field, attribute, default", [("loss.obedience_noise_allowance", "noise_allowance", 1.0),
                                                       ("loss.obedience_smoothing", "smoothing", 0.0)])
@pytest.mark.parametrize("method", ["sgoc", "pgoc"])
def test_the_config_field_reaches_the_loss_and_fails_by_name(recipe_config, method, field, attribute, default):
    name = f"{method}_recommendation_letter"
    cfg = recipe_config(name, "env.num_envs=8", f"{field}=1.645")
    validate_config(cfg, method=method)
    assert getattr(build_method(method, one_step.make_env(cfg), cfg).sender_losses["obedience"], attribute) == 1.645
    assert getattr(build_method(method, one_step.make_env(cfg), recipe_config(name, "env.num_envs=8")).sender_losses[
        "obedience"], attribute) == default  # the one-step default
    with pytest.raises(ConfigError, match=f"{field}=-1 is invalid"):
        validate_config(recipe_config(name, f"{field}=-1"), method=method)
    # modes without a hinge on an estimate do not read it (as lagrangian does not read dual_lr): its value is ignored
    for mode in ("dual", "dual_pairwise"):
        dual = recipe_config(name, "env.num_envs=8", f"loss.obedience_mode={mode}", f"{field}=1.645")
        assert getattr(build_method(method, one_step.make_env(dual), dual).sender_losses["obedience"], attribute) == 0.0


# ------------------------------------------------------------------------ loss.obedience_smoothing: a smoothed hinge
@pytest.mark.parametrize("mode", ["lagrangian", "stringent"])
def test_smoothing_is_the_hinges_expectation_under_a_gaussian_error(mode):
    """smoothing=s: lambda * E[relu(x + tau e)], e ~ N(0, 1), tau = s SE, per pair (x = eps - k SE - C_hat); its
    gradient through C_hat is lambda * Phi(x / tau) (by quadrature: the closed form is no approximation)."""
    *modules, batch = _batch()
    d, _, _ = _per_state_terms(batch)
    n = d.shape[0]
    off = ~torch.eye(2, dtype=torch.bool)
    c_hat, se = d.mean(0)[off], (d.std(0) / n**0.5)[off]
    s, k = 1.5, 1.0
    x, tau = EPS - k * se - c_hat, s * se
    e = torch.linspace(-12, 12, 200_001, dtype=F64)
    density = torch.exp(-0.5 * e**2) / (2 * torch.pi) ** 0.5
    expected_hinge = (torch.relu(x[:, None] + tau[:, None] * e) * density).sum(-1) * (e[1] - e[0])
    reduce = torch.sum if mode == "lagrangian" else torch.mean
    got = _loss(modules, mode=mode, noise_allowance=k, smoothing=s)(batch)["loss_obedience"].detach().to(F64)
    torch.testing.assert_close(got, LAMBDA * reduce(expected_hinge), rtol=1e-4, atol=1e-7)
    hinge = _loss(modules, mode=mode, noise_allowance=k)(batch)["loss_obedience"].detach().to(F64)
    assert got > hinge  # Jensen: the expectation of a convex hinge is above the hinge
    # zero smoothing is the hinge, to the bit
    zero = _loss(modules, mode=mode, noise_allowance=k, smoothing=0.0)(batch)["loss_obedience"].detach()
    assert torch.equal(zero, _loss(modules, mode=mode, noise_allowance=k)(batch)["loss_obedience"].detach())


def test_the_smoothed_hinges_gradient_is_the_normal_cdf():
    scheme, receiver, critic = tabular_modules(PHI2, PI2, U_RECEIVER, w_key=W_RECEIVER_KEY)
    loss = _loss((scheme, receiver, critic), smoothing=1.0)
    shortfall = torch.linspace(-3, 3, 13, dtype=F64, requires_grad=True)
    se = torch.full_like(shortfall, 0.5)
    (grad,) = torch.autograd.grad(loss._hinge(shortfall, se).sum(), shortfall)
    torch.testing.assert_close(grad, torch.special.ndtr(shortfall.detach() / 0.5))
