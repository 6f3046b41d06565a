"""``recommendation_weight`` (beta): the sender's losses read message k as "take action k" (the revelation
principle's obedient receiver) with weight beta, the learned receiver with weight 1 - beta."""
import math

import pytest
import torch
from omegaconf import OmegaConf

from msgzoo.envs import recommendation_letter
from msgzoo.objectives import ObedienceConstraintLoss, SignalingGradientLoss
from msgzoo.training.methods import LinearSchedule, schedule_after_warmup
from recipes import build_method
from msgzoo.pipelines import one_step
from test_objectives import F64, U_RECEIVER, U_SENDER, W_RECEIVER_KEY, _scheme_grad, collect, tabular_modules

PHI2 = torch.tensor([[0.7, 0.3], [0.2, 0.8]], dtype=F64)
PI2 = torch.tensor([[0.9, 0.1], [0.35, 0.65]], dtype=F64)
PI2_OTHER = torch.tensor([[0.2, 0.8], [0.6, 0.4]], dtype=F64)


def _batch(pi=PI2, w=U_RECEIVER, w_key=W_RECEIVER_KEY, seed=0):
    scheme, receiver, critic = tabular_modules(PHI2, pi, w, w_key=w_key)
    torch.manual_seed(seed)
    return scheme, receiver, critic, collect(recommendation_letter(num_envs=4096, seed=seed), scheme, receiver)


def test_full_weight_gives_the_obedience_constraints_of_eq3():
    """beta = 1: C[k, l] = mean_t phi(k|s_t) (W^j(s_t, k) - W^j(s_t, l)), whatever the receiver does."""
    scheme, receiver, critic, batch = _batch()
    loss = ObedienceConstraintLoss(scheme, receiver, critic, counterfactual="all", gamma=0.0, recommendation_weight=1.0)
    got = loss.constraint_matrix(batch).detach().to(F64)
    s = batch["sender", "state"]
    phi, w = PHI2[s], U_RECEIVER[s]  # [T, K], [T, A] with K = A
    expected = torch.einsum("tk,tkl->kl", phi, w[:, :, None] - w[:, None, :]) / s.numel()
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)
    # the learned receiver no longer enters: another policy gives the same matrix
    scheme2, receiver2, critic2 = tabular_modules(PHI2, PI2_OTHER, U_RECEIVER, w_key=W_RECEIVER_KEY)
    other = ObedienceConstraintLoss(scheme2, receiver2, critic2, counterfactual="all", gamma=0.0, recommendation_weight=1.0)
    torch.testing.assert_close(other.constraint_matrix(batch), loss.constraint_matrix(batch))


def test_constraints_are_linear_in_the_weight():
    scheme, receiver, critic, batch = _batch()

    def matrix(beta):
        loss = ObedienceConstraintLoss(scheme, receiver, critic, counterfactual="all", gamma=0.0,
                                       recommendation_weight=beta)
        return loss.constraint_matrix(batch).detach()

    torch.testing.assert_close(matrix(0.25), 0.75 * matrix(0.0) + 0.25 * matrix(1.0), rtol=1e-4, atol=1e-5)  # float32 sums


def test_full_weight_signaling_gradient_is_the_obedient_value_gradient():
    """beta = 1: the scheme's gradient is that of mean_t sum_k phi(k|s_t) W^i(s_t, k), exactly in phi."""
    scheme, receiver, critic, batch = _batch(w=U_SENDER, w_key=("sender", "action_value"))
    loss = SignalingGradientLoss(scheme, receiver, critic, gamma=0.0, recommendation_weight=1.0)
    got = -_scheme_grad(loss(batch), "loss_signaling", scheme).to(F64)
    s = batch["sender", "state"]
    phi, w = PHI2[s], U_SENDER[s]
    per_sample = phi * (w - (phi * w).sum(-1, keepdim=True))  # d/dlogits sum_k phi_k w_k
    expected = torch.zeros(2, 2, dtype=F64).index_add_(1, s, per_sample.T) / s.numel()
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


def test_signaling_loss_mixes_the_two_objectives():
    scheme, receiver, critic, batch = _batch(w=U_SENDER, w_key=("sender", "action_value"))

    def value(beta):
        return SignalingGradientLoss(scheme, receiver, critic, gamma=0.0, recommendation_weight=beta)(batch)[
            "loss_signaling"].detach()

    torch.testing.assert_close(value(0.4), 0.6 * value(0.0) + 0.4 * value(1.0), rtol=1e-4, atol=1e-5)  # float32 sums


@pytest.mark.parametrize("loss_cls", [SignalingGradientLoss, ObedienceConstraintLoss], ids=lambda c: c.__name__)
@pytest.mark.parametrize("beta", [-0.1, 1.5])
def test_weight_outside_the_unit_interval_is_refused(loss_cls, beta):
    scheme, receiver, critic = tabular_modules(PHI2, PI2, U_RECEIVER, w_key=W_RECEIVER_KEY)
    with pytest.raises(ValueError, match="recommendation_weight"):
        loss_cls(scheme, receiver, critic, recommendation_weight=beta)


def test_a_message_beyond_the_actions_is_read_by_the_learned_receiver_alone():
    """Three messages on two actions: the obedience loss mixes messages 0 and 1 with obeying them and reads message 2
    (which recommends nothing) by the learned receiver; the signaling loss's obedient value refuses it by name."""
    phi3 = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.3, 0.6]], dtype=F64)
    pi3 = torch.tensor([[0.8, 0.2], [0.4, 0.6], [0.1, 0.9]], dtype=F64)
    scheme, receiver, critic = tabular_modules(phi3, pi3, U_RECEIVER, w_key=W_RECEIVER_KEY)
    batch = collect(recommendation_letter(num_envs=64, num_messages=3, seed=0), scheme, receiver)
    loss = ObedienceConstraintLoss(scheme, receiver, critic, counterfactual="all", gamma=0.0, recommendation_weight=0.5)
    s = batch["sender", "state"]
    w = U_RECEIVER[s]  # [T, A]
    q = w @ pi3.T  # [T, K]: sum_a pi(a | k) W^j(s_t, a)
    q = torch.cat([0.5 * q[:, :2] + 0.5 * w, q[:, 2:]], dim=-1)
    expected = torch.einsum("tk,tkl->kl", phi3[s], q[:, :, None] - q[:, None, :]) / s.numel()
    torch.testing.assert_close(loss.constraint_matrix(batch).detach().to(F64), expected, rtol=1e-4, atol=1e-6)
    scheme, receiver, critic = tabular_modules(phi3, pi3, U_SENDER, w_key=("sender", "action_value"))
    signaling = SignalingGradientLoss(scheme, receiver, critic, gamma=0.0, recommendation_weight=0.5)
    with pytest.raises(ValueError, match=r"num_messages <= the 2 actions \(got 3\).*loss\.recommendation_weight=0"):
        signaling(batch)


@pytest.mark.parametrize(
    "loss, warmup, expected",
    [
        (dict(recommendation_weight=0.0), dict(frames=200, recommendation_weight=1.0), LinearSchedule(1.0, 0.0, 1000, 200)),
        (dict(recommendation_weight=0.0), dict(frames=0, recommendation_weight=1.0), LinearSchedule(1.0, 0.0, 1000, 0)),
        (dict(recommendation_weight=1.0), dict(frames=200, recommendation_weight=1.0), None),  # a constant
        (dict(recommendation_weight=0.0), dict(frames=200), None),  # no start value: the final one throughout
        (dict(), dict(frames=200), None),  # a config without the field: the paper's sender
    ],
)
def test_recommendation_schedule_from_config(loss, warmup, expected):
    cfg = OmegaConf.create({"loss": loss, "warmup": warmup, "collector": {"total_frames": 1000}})
    assert schedule_after_warmup(cfg, "recommendation_weight") == expected


def test_the_trainer_moves_the_weight_on_each_seeds_env_steps(recipe_config, tmp_path):
    """beta 1 until 32 students, 0 at 128: the sender's two losses see it at 32 and 96 env steps (the obedience loss
    follows the signaling loss's beta where its own is null)."""
    from msgzoo.runtime.experiment import Experiment
    from msgzoo.training.trainer import Trainer

    cfg = recipe_config("sgoc_recommendation_letter", "env.num_envs=32", "collector.total_frames=128",
                        "warmup.frames=32", "warmup.recommendation_weight=1.0", "loss.recommendation_weight=0.0",
                        "loss.obedience_recommendation_weight=null")
    env = one_step.make_env(cfg)
    method = build_method("sgoc", env, cfg)
    seen = {name: [] for name in ("signaling", "obedience")}
    for name in seen:
        loss = method.sender_losses[name]
        forward = loss.forward
        loss.forward = lambda td, loss=loss, forward=forward, name=name: seen[name].append(
            loss.recommendation_weight) or forward(td)
    exp = Experiment(method="sgoc", task="t", seed=0, config={}, backends=("csv",), run_dir=tmp_path / "run")
    with exp:
        Trainer(env, method, exp, total_frames=128, frames_per_batch=32, log_interval=2).train()
    for name in seen:
        assert seen[name] == pytest.approx([1.0, 1.0 - (96 - 32) / 96])


@pytest.mark.parametrize("method", ["sgoc", "pgoc"])
def test_the_obedience_loss_keeps_its_own_weight_while_the_schedule_moves_the_others(recipe_config, tmp_path, method):
    """``loss.obedience_recommendation_weight=1``: the obedience loss reads messages as recommendations in every update;
    SGOC's signaling loss still follows the warm-up's schedule (PGOC's A2C sender has no beta)."""
    from msgzoo.runtime.experiment import Experiment
    from msgzoo.training.trainer import Trainer

    cfg = recipe_config(f"{method}_recommendation_letter", "env.num_envs=32", "collector.total_frames=128",
                        "warmup.frames=32", "warmup.recommendation_weight=0.5", "loss.recommendation_weight=0.0",
                        "loss.obedience_recommendation_weight=1.0")
    env = one_step.make_env(cfg)
    built = build_method(method, env, cfg)
    names = [n for n in ("signaling", "obedience") if hasattr(built.sender_losses.get(n), "recommendation_weight")]
    seen = {name: [] for name in names}
    for name in names:
        loss = built.sender_losses[name]
        forward = loss.forward
        loss.forward = lambda td, loss=loss, forward=forward, name=name: seen[name].append(
            loss.recommendation_weight) or forward(td)
    exp = Experiment(method=method, task="t", seed=0, config={}, backends=("csv",), run_dir=tmp_path / "run")
    with exp:
        Trainer(env, built, exp, total_frames=128, frames_per_batch=32, log_interval=2).train()
    assert seen["obedience"] == [1.0, 1.0]
    if method == "sgoc":
        assert seen["signaling"] == pytest.approx([0.5, 0.5 * (1 - (96 - 32) / 96)])


@pytest.mark.parametrize(
    "loss, expected",
    [(dict(recommendation_weight=0.25, obedience_recommendation_weight=None), 0.25),  # the signaling loss's beta
     (dict(recommendation_weight=0.25, obedience_recommendation_weight=1.0), 1.0),
     (dict(recommendation_weight=0.25), 0.25)],  # a config without the field
)
def test_obedience_recommendation_weight_from_config(loss, expected):
    from msgzoo.training.methods import obedience_recommendation_weight_from_config

    assert obedience_recommendation_weight_from_config(OmegaConf.create({"loss": loss})) == expected


def test_messages_beyond_the_actions_keep_the_learned_receiver():
    """A message past the actions recommends nothing: the obedience loss's mix leaves its value to the learned
    receiver, and mixes the others as with a message space of the actions' size."""
    from msgzoo.objectives.common import mix_with_recommendations

    q = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    w = torch.tensor([[1.0, -1.0], [2.0, 0.0]])
    mixed = mix_with_recommendations(q, w, 0.5)
    torch.testing.assert_close(mixed[:, :2], 0.5 * q[:, :2] + 0.5 * w)
    torch.testing.assert_close(mixed[:, 2], q[:, 2])
    torch.testing.assert_close(mix_with_recommendations(q[:, :2], w, 0.25), 0.75 * q[:, :2] + 0.25 * w)


def test_more_messages_than_actions_run_with_the_obedience_weight(recipe_config, tmp_path):
    """The one-step default (the obedience loss's beta 0.5) with three messages on two actions: a finite run."""
    from recipes import run_recipe as run

    cfg = recipe_config("sgoc_recommendation_letter", "env.num_envs=32", "collector.total_frames=64",
                        "warmup.frames=32", "env.num_messages=3", f"+run_dir={tmp_path}", "logger.backends=[csv]")
    assert cfg.loss.obedience_recommendation_weight == 0.5
    summary = run(cfg, method="sgoc")
    assert len(summary["scheme"][0]) == 3 and math.isfinite(summary["sender_reward"])
