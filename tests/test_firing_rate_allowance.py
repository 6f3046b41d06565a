"""``allowance="firing_rate"``: each obedience hinge on a batch estimate has its own noise allowance
``k = -Phi^{-1}(p)``, ``p`` the running share of batches in which it fired, so that the true constraint sits at its
bound whatever lambda and the game (``loss.obedience_allowance``)."""
import pytest
import torch

from msgzoo.objectives import ObedienceConstraintLoss
from msgzoo.objectives.obedience import ALLOWANCE_RANGE
from msgzoo.pipelines import one_step
from msgzoo.runtime.experiment import Experiment
from msgzoo.training.trainer import Trainer
from msgzoo.runtime.config_validation import validate_config
from msgzoo.training.config_schema import ConfigError
from recipes import build_method
from test_noise_allowance import EPS, LAMBDA, PHI2, PI2, _batch, _loss, _per_state_terms
from test_objectives import F64, U_RECEIVER, W_RECEIVER_KEY, tabular_modules


def test_it_starts_as_the_fixed_allowance():
    """The firing rate starts at Phi(-k): the first update's hinges are the fixed allowance's (up to float32 rounding of
    k through Phi and its inverse)."""
    *modules, batch = _batch()
    fixed = _loss(modules, noise_allowance=1.0)(batch)
    adaptive_loss = _loss(modules, noise_allowance=1.0, allowance="firing_rate", num_messages=2)
    adaptive = adaptive_loss(batch)
    torch.testing.assert_close(adaptive["loss_obedience"], fixed["loss_obedience"], rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(adaptive["noise_allowance"], torch.tensor(1.0), rtol=1e-5, atol=0.0)
    assert adaptive_loss.hinge_firing_rate.shape == (2,)  # one per ordered pair of the two messages


def test_each_hinge_reads_its_own_rate_and_update_state_moves_it():
    """A pair whose hinge fired in most recent batches gets a margin (k < 0), one that rarely fired an allowance (k > 0):
    ``lambda * relu(eps - k SE - C_hat)`` per pair, with ``k = -Phi^{-1}(p)``; ``update_state`` then moves each rate by
    ``p <- decay p + (1 - decay) fired``."""
    *modules, batch = _batch()
    d, _, _ = _per_state_terms(batch)
    n = d.shape[0]
    off = ~torch.eye(2, dtype=torch.bool)
    c_hat, se = d.mean(0)[off], (d.std(0) / n**0.5)[off]
    loss = _loss(modules, allowance="firing_rate", num_messages=2, firing_rate_decay=0.9)
    rate = torch.tensor([0.9, 0.05])
    loss.hinge_firing_rate.copy_(rate)
    k = -torch.special.ndtri(rate.to(F64))
    assert k[0] < 0 < k[1]
    out = loss(batch)
    expected = LAMBDA * torch.relu(EPS - k * se - c_hat).sum()
    torch.testing.assert_close(out["loss_obedience"].detach().to(F64), expected, rtol=1e-4, atol=1e-7)
    fired = (c_hat < EPS - k * se).to(torch.float32)
    assert torch.equal(out["hinge_fired"], fired)
    loss.update_state(out)
    torch.testing.assert_close(loss.hinge_firing_rate, 0.9 * rate + 0.1 * fired)


def test_the_allowance_is_clamped():
    *modules, batch = _batch()
    loss = _loss(modules, allowance="firing_rate", num_messages=2)
    loss.hinge_firing_rate.copy_(torch.tensor([1.0, 0.0]))  # never / always: -Phi^-1 is -inf / +inf
    out = loss(batch)
    assert torch.isfinite(out["loss_obedience"])
    torch.testing.assert_close(out["noise_allowance"], torch.tensor(sum(ALLOWANCE_RANGE) / 2))


def test_rates_are_per_seed_and_uniform_has_one():
    scheme, receiver, critic = tabular_modules(PHI2, PI2, U_RECEIVER, w_key=W_RECEIVER_KEY)
    per_pair = ObedienceConstraintLoss(scheme, receiver, critic, counterfactual="all", num_messages=3,
                                       ensemble_shape=(4,), allowance="firing_rate", noise_allowance=1.0)
    assert per_pair.hinge_firing_rate.shape == (4, 6)
    torch.testing.assert_close(per_pair.hinge_firing_rate, torch.full((4, 6), 0.15865525))  # Phi(-1)
    uniform = ObedienceConstraintLoss(scheme, receiver, critic, counterfactual="uniform", allowance="firing_rate")
    assert uniform.hinge_firing_rate.shape == (1,) and uniform.hinge_firing_rate.item() == 0.5  # Phi(0)
    # a fixed allowance keeps the checkpoint's keys
    assert "hinge_firing_rate" not in ObedienceConstraintLoss(scheme, receiver, critic).state_dict()


@pytest.mark.parametrize("kwargs, match", [
    (dict(allowance="adaptive"), "allowance='adaptive' is invalid"),
    (dict(allowance="firing_rate", mode="dual", num_messages=2), "allowance='firing_rate' is invalid with mode='dual'"),
    (dict(allowance="firing_rate", mode="stringent", counterfactual="uniform"), "allowance='firing_rate' is invalid"),
    (dict(allowance="firing_rate"), "num_messages=None is invalid"),
    (dict(allowance="firing_rate", num_messages=2, firing_rate_decay=1.0), "firing_rate_decay=1.0 is invalid"),
])
def test_bad_arguments_fail_by_name(kwargs, match):
    scheme, receiver, critic = tabular_modules(PHI2, PI2, U_RECEIVER, w_key=W_RECEIVER_KEY)
    with pytest.raises(ValueError, match=match):
        _loss((scheme, receiver, critic), **kwargs)


def test_update_state_needs_the_forward_output():
    *modules, batch = _batch()
    loss = _loss(modules, allowance="firing_rate", num_messages=2)
    out = loss(batch)
    del out["hinge_fired"]
    with pytest.raises(KeyError, match="hinge_fired"):
        loss.update_state(out)


@pytest.mark.parametrize("method", ["sgoc", "pgoc"])
def test_the_config_fields_reach_the_loss_and_fail_by_name(recipe_config, method):
    name = f"{method}_recommendation_letter"
    cfg = recipe_config(name, "env.num_envs=8", "loss.obedience_allowance=firing_rate",
                        "loss.obedience_firing_rate_decay=0.9")
    validate_config(cfg, method=method)
    loss = build_method(method, one_step.make_env(cfg), cfg).sender_losses["obedience"]
    assert (loss.allowance, loss.firing_rate_decay) == ("firing_rate", 0.9)
    with pytest.raises(ConfigError, match="loss.obedience_allowance='sometimes' is invalid"):
        validate_config(recipe_config(name, "loss.obedience_allowance=sometimes"), method=method)
    with pytest.raises(ConfigError, match="loss.obedience_firing_rate_decay=1.5 is invalid"):
        validate_config(recipe_config(name, "loss.obedience_firing_rate_decay=1.5"), method=method)
    # the dual modes have no hinge on an estimate: the field is not read there (as noise_allowance is not)
    dual = recipe_config(name, "env.num_envs=8", "loss.obedience_mode=dual", "loss.obedience_allowance=firing_rate")
    assert build_method(method, one_step.make_env(dual), dual).sender_losses["obedience"].allowance == "fixed"


def test_a_run_moves_the_rates_and_checkpoints_them(recipe_config, tmp_path):
    """The rates are the loss's buffer: the recipe's after-loss hook moves them on every sender update, and the
    checkpoint holds them."""
    num_envs, batches = 64, 20
    cfg = recipe_config("sgoc_recommendation_letter", f"env.num_envs={num_envs}", "logger.backends=[csv]",
                        "warmup.frames=0", f"collector.total_frames={batches * num_envs}",
                        "loss.obedience_allowance=firing_rate")
    env = one_step.make_env(cfg)
    method = build_method("sgoc", env, cfg)
    loss = method.sender_losses["obedience"]
    start = loss.hinge_firing_rate.clone()
    assert start.shape == (2,)  # the ordered pairs of the two messages
    exp = Experiment(method="sgoc", task="t", seed=0, config=cfg, run_dir=str(tmp_path), backends=("csv",))
    trainer = Trainer(env, method, exp, total_frames=batches * num_envs, frames_per_batch=num_envs)
    trainer.train()
    exp.close()
    assert not torch.equal(loss.hinge_firing_rate, start)
    assert torch.equal(trainer.state_dict()["losses"]["loss_obedience"]["hinge_firing_rate"], loss.hinge_firing_rate)
