"""Loss modules: keys (defaults, ``set_keys``), purity, gradient routing, exactness on the tabular one-step game,
obedience modes, target updates, and training on a user-defined environment with its own key names."""
from __future__ import annotations

import math
import re

import pytest
import torch
from tensordict import TensorDict, TensorDictBase
from torch import nn
from torchrl.data import Categorical, Composite, OneHot, Unbounded
from torchrl.envs import EnvBase
from torchrl.envs.utils import ExplorationType, check_env_specs, set_exploration_type
from torchrl.objectives import SoftUpdate
from torchrl.objectives.utils import ValueEstimators

from msgzoo.envs.bayesian_persuasion import RECOMMENDATION_LETTER, recommendation_letter
from msgzoo.game_theory.exact_payoffs import exact_payoffs, tabulate_one_step_policies
from msgzoo.game_theory.metrics import obedience_constraints, obedience_violation
from msgzoo.modules import (
    ObservationMessageNet,
    VectorNet,
    make_action_value_critic,
    make_receiver_actor,
    make_signaling_scheme,
    make_value_critic,
)
from msgzoo.modules.dial import make_dial_receiver, make_dial_sender
from msgzoo.modules.gumbel import straight_through_one_hot
from msgzoo.objectives import (
    DIALLoss,
    ObedienceConstraintLoss,
    SignalingGradientLoss,
    attach_next_message,
    make_receiver_a2c_loss,
    make_sender_a2c_loss,
)
from msgzoo.objectives.common import receiver_probs_all_messages

# TorchRL warns when a loss with target parameters has no updater yet; most tests here need none.
pytestmark = pytest.mark.filterwarnings("ignore:No target network updater")

F64 = torch.float64
PRIOR = torch.tensor(RECOMMENDATION_LETTER["prior"], dtype=F64)
U_SENDER = torch.tensor(RECOMMENDATION_LETTER["sender_utility"], dtype=F64)
U_RECEIVER = torch.tensor(RECOMMENDATION_LETTER["receiver_utility"], dtype=F64)
# A fixed tabular scheme over three messages and a receiver that reads them (rows are distributions).
PHI3 = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.3, 0.6]], dtype=F64)
PI3 = torch.tensor([[0.8, 0.2], [0.4, 0.6], [0.1, 0.9]], dtype=F64)
W_RECEIVER_KEY = ("sender", "receiver_action_value")



# ------------------------------------------------------------------------------------------------ helpers


def only_param(module: nn.Module) -> nn.Parameter:
    (param,) = list(module.parameters())
    return param


def default_modules(num_messages: int = 2, *, w_key=("sender", "action_value"), seed: int = 0):
    """Randomly initialised scheme, receiver and critic on the default keys (one-step nets of the paper)."""
    torch.manual_seed(seed)
    scheme = make_signaling_scheme(VectorNet(2, num_messages, bias=False))
    receiver = make_receiver_actor(ObservationMessageNet(VectorNet(num_messages, 2, bias=False)))
    critic = make_action_value_critic(VectorNet(2, 2), out_key=w_key)
    return scheme, receiver, critic


def tabular_modules(phi: torch.Tensor, pi: torch.Tensor, w: torch.Tensor, *, w_key=("sender", "action_value")):
    """Bias-free linear nets on one-hot inputs with weights set so that ``softmax`` gives ``phi`` and ``pi``
    exactly and the critic gives ``W(s, .) = w[s]`` (``Linear(x) = weight @ x``, so row ``s`` is column ``s``)."""
    k = phi.shape[1]
    scheme = make_signaling_scheme(VectorNet(2, k, bias=False))
    receiver = make_receiver_actor(ObservationMessageNet(VectorNet(k, 2, bias=False)))
    critic = make_action_value_critic(VectorNet(2, 2, bias=False), out_key=w_key)
    with torch.no_grad():
        only_param(scheme).copy_(phi.log().T)
        only_param(receiver).copy_(pi.log().T)
        only_param(critic).copy_(w.T)
    return scheme, receiver, critic


def collect(env: EnvBase, *policy: nn.Module, grad: bool = False) -> TensorDictBase:
    """One step of every game of ``env`` with sampled messages and actions."""
    with torch.set_grad_enabled(grad), set_exploration_type(ExplorationType.RANDOM):
        td = env.reset()
        for module in policy:
            td = module(td)
        return env.step(td)


def grads(module: nn.Module) -> list[torch.Tensor | None]:
    return [p.grad for p in module.parameters()]


def has_grad(module: nn.Module) -> bool:
    return all(g is not None and g.abs().sum() > 0 for g in grads(module))


def no_grad(module: nn.Module) -> bool:
    return all(g is None or not g.any() for g in grads(module))


def zero_grads(*modules: nn.Module) -> None:
    for m in modules:
        for p in m.parameters():
            p.grad = None


def assert_same_tensordict(a: TensorDictBase, b: TensorDictBase) -> None:
    keys_a, keys_b = set(a.keys(True, True)), set(b.keys(True, True))
    assert keys_a == keys_b, f"keys changed: added {keys_a - keys_b}, removed {keys_b - keys_a}"
    for key in keys_a:
        assert torch.equal(a.get(key), b.get(key)), f"{key} was modified"


def _tuple(key) -> tuple:
    return (key,) if isinstance(key, str) else tuple(key)


def rename(td: TensorDictBase, mapping: dict) -> TensorDict:
    """A copy of ``td`` with keys renamed (also under ``"next"``); unmapped keys are kept."""
    mapping = {_tuple(k): _tuple(v) for k, v in mapping.items()}
    out = TensorDict({}, batch_size=td.batch_size)
    for key in td.keys(True, True):
        key = _tuple(key)
        if key[0] == "next":
            new = ("next", *mapping.get(key[1:], key[1:]))
        else:
            new = mapping.get(key, key)
        out.set(new, td.get(key).clone())
    return out


def linear_state_dict_copy(src: nn.Module, dst: nn.Module) -> None:
    """Same parameter values in a module built on other keys (same architecture, so same state-dict names)."""
    dst.load_state_dict(src.state_dict())


# Renamed keys: the professor writes a "letter", HR makes a "decision".
RENAMED = {
    ("sender", "observation"): ("prof", "obs"),
    ("sender", "state"): ("prof", "state"),
    ("sender", "logits"): ("prof", "logits"),
    ("sender", "message"): ("prof", "letter"),
    ("sender", "gumbel"): ("prof", "noise"),
    ("sender", "reward"): ("prof", "payoff"),
    ("sender", "message_logits"): ("prof", "m"),
    ("sender", "dru_noise"): ("prof", "dru"),
    ("receiver", "observation"): ("hr", "obs"),
    ("receiver", "action"): ("hr", "decision"),
    ("receiver", "logits"): ("hr", "logits"),
    ("receiver", "action_log_prob"): ("hr", "decision_log_prob"),
    ("receiver", "action_value"): ("hr", "q"),
    ("receiver", "reward"): ("hr", "payoff"),
    "done": "finished",
    "terminated": "ended",
}


def renamed_modules(num_messages: int = 2, *, w_key=("prof", "w")):
    scheme = make_signaling_scheme(
        VectorNet(2, num_messages, bias=False), in_keys=[("prof", "obs")], logits_key=("prof", "logits"),
        message_key=("prof", "letter"), gumbel_key=("prof", "noise"),
    )
    receiver = make_receiver_actor(
        ObservationMessageNet(VectorNet(num_messages, 2, bias=False)), observation_key=("hr", "obs"),
        message_key=("prof", "letter"), logits_key=("hr", "logits"), action_key=("hr", "decision"),
        log_prob_key=("hr", "decision_log_prob"),
    )
    critic = make_action_value_critic(VectorNet(2, 2), in_keys=[("prof", "obs")], out_key=w_key)
    return scheme, receiver, critic


def half_terminated(td: TensorDictBase) -> TensorDictBase:
    """Marks every other step as not terminated, so that bootstrapping (gamma > 0) matters."""
    for key in (("next", "terminated"), ("next", "done")):
        flag = td.get(key).clone()
        flag[::2] = False
        td.set(key, flag)
    return td


LOSSES = [SignalingGradientLoss, ObedienceConstraintLoss, DIALLoss]


# ---------------------------------------------------------------------------------------- keys: defaults


def _attribute_docs(doc: str) -> dict[str, str]:
    """``{name: text}`` for each ``name (NestedKey): text`` entry of an ``Attributes:`` section."""
    doc = " ".join(doc.split())
    parts = re.split(r"(\w+) \(NestedKey\):", doc)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def _rst(value) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    return "(" + ", ".join(f'"{v}"' for v in value) + ")"


@pytest.mark.parametrize("loss_cls", LOSSES, ids=lambda c: c.__name__)
def test_default_keys_documented(loss_cls):
    fields = loss_cls._AcceptedKeys.__dataclass_fields__
    documented = _attribute_docs(loss_cls._AcceptedKeys.__doc__)
    assert set(fields) == set(documented), f"undocumented: {set(fields) - set(documented)}"
    defaults = loss_cls._AcceptedKeys()
    for name in fields:
        expected = f"Defaults to ``{_rst(getattr(defaults, name))}``"
        assert expected in documented[name], f"{name}: {documented[name]!r} lacks {expected!r}"
    assert loss_cls.default_keys is loss_cls._AcceptedKeys


def test_tensor_keys_equal_defaults():
    scheme, receiver, critic = default_modules()
    sg = SignalingGradientLoss(scheme, receiver, critic)
    oc = ObedienceConstraintLoss(scheme, receiver, make_action_value_critic(VectorNet(2, 2), out_key=W_RECEIVER_KEY))
    dial = DIALLoss(make_dial_sender(VectorNet(2, 2)), make_dial_receiver(ObservationMessageNet(VectorNet(2, 2)), 2))
    for loss in (sg, oc, dial):
        assert loss.tensor_keys == type(loss)._AcceptedKeys()
    # set_keys(key=None) restores a default; keys are per instance
    sg.set_keys(message=("x", "y"))
    assert sg.tensor_keys.message == ("x", "y")
    assert SignalingGradientLoss(scheme, receiver, critic).tensor_keys.message == ("sender", "message")
    sg.set_keys(message=None)
    assert sg.tensor_keys.message == ("sender", "message")


def test_a2c_factories_set_the_keys():
    scheme, receiver, _ = default_modules()
    v_receiver = make_value_critic(
        ObservationMessageNet(VectorNet(2, 1)), in_keys=[("receiver", "observation"), ("sender", "message")],
        out_key=("receiver", "state_value"),
    )
    loss = make_receiver_a2c_loss(receiver, v_receiver)
    keys = loss.tensor_keys
    assert keys.action == ("receiver", "action") and keys.reward == ("receiver", "reward")
    assert keys.value == ("receiver", "state_value") and keys.sample_log_prob == ("receiver", "action_log_prob")
    assert keys.advantage == ("receiver", "advantage") and keys.value_target == ("receiver", "value_target")
    assert loss.value_estimator.tensor_keys.value == ("receiver", "state_value")
    assert loss.value_estimator.tensor_keys.reward == ("receiver", "reward")

    v_sender = make_value_critic(VectorNet(2, 1), in_keys=[("sender", "observation")], out_key=("sender", "state_value"))
    pg = make_sender_a2c_loss(scheme, v_sender)
    assert pg.tensor_keys.action == ("sender", "message") and pg.tensor_keys.reward == ("sender", "reward")
    assert pg.tensor_keys.value == ("sender", "state_value")
    assert pg.tensor_keys.sample_log_prob == ("sender", "message_log_prob")


# -------------------------------------------------------------------------------------- keys: set_keys


@pytest.mark.parametrize("loss_cls", LOSSES, ids=lambda c: c.__name__)
def test_set_keys_unknown_name_raises(loss_cls):
    scheme, receiver, critic = default_modules()
    if loss_cls is DIALLoss:
        loss = DIALLoss(make_dial_sender(VectorNet(2, 2)), make_dial_receiver(ObservationMessageNet(VectorNet(2, 2)), 2))
    else:
        loss = loss_cls(scheme, receiver, critic)
    with pytest.raises(ValueError, match="not_a_key"):
        loss.set_keys(not_a_key=("a", "b"))


@pytest.mark.parametrize("loss_cls", [SignalingGradientLoss, ObedienceConstraintLoss])
def test_receiver_must_read_the_message_key(loss_cls):
    scheme, receiver, critic = default_modules()
    batch = collect(recommendation_letter(num_envs=8, seed=0), scheme, receiver)
    loss = loss_cls(scheme, receiver, critic)
    loss.set_keys(message=("prof", "letter"))
    with pytest.raises(ValueError, match=re.escape("('prof', 'letter')")):
        loss(batch)


def test_dial_receiver_must_read_the_message_key():
    sender = make_dial_sender(VectorNet(2, 2))
    receiver = make_dial_receiver(ObservationMessageNet(VectorNet(2, 2)), 2)
    batch = collect(recommendation_letter(num_envs=8, seed=0), sender, receiver)
    loss = DIALLoss(sender, receiver)
    loss.set_keys(message=("prof", "letter"))
    with pytest.raises(ValueError, match=re.escape("('prof', 'letter')")):
        loss(batch)


def _scheme_grad(loss_out: TensorDictBase, name: str, scheme: nn.Module) -> torch.Tensor:
    zero_grads(scheme)
    loss_out[name].backward()
    return only_param(scheme).grad.clone()


@pytest.mark.parametrize("gamma", [0.0, 0.9])
def test_signaling_gradient_set_keys_gives_the_same_numbers(gamma):
    scheme, receiver, critic = default_modules(seed=1)
    scheme2, receiver2, critic2 = renamed_modules()
    for a, b in ((scheme, scheme2), (receiver, receiver2), (critic, critic2)):
        linear_state_dict_copy(a, b)
    batch = half_terminated(collect(recommendation_letter(num_envs=64, seed=0), scheme, receiver))
    renamed = rename(batch, RENAMED)

    loss = SignalingGradientLoss(scheme, receiver, critic, gamma=gamma)
    loss2 = SignalingGradientLoss(scheme2, receiver2, critic2, gamma=gamma)
    loss2.set_keys(
        logits=("prof", "logits"), message=("prof", "letter"), gumbel=("prof", "noise"), action=("hr", "decision"),
        reward=("prof", "payoff"), action_value=("prof", "w"), done="finished", terminated="ended",
    )
    out, out2 = loss(batch), loss2(renamed)
    for key in ("loss_signaling", "loss_critic", "sender_value", "advantage"):
        torch.testing.assert_close(out[key], out2[key], rtol=0, atol=0)
    torch.testing.assert_close(_scheme_grad(out, "loss_signaling", scheme), _scheme_grad(out2, "loss_signaling", scheme2))
    # the default-key loss cannot read the renamed data
    with pytest.raises(KeyError):
        loss(renamed)


@pytest.mark.parametrize("counterfactual", ["uniform", "all"])
def test_obedience_set_keys_gives_the_same_numbers(counterfactual):
    scheme, receiver, critic = default_modules(3, w_key=W_RECEIVER_KEY, seed=2)
    scheme2, receiver2, critic2 = renamed_modules(3, w_key=("prof", "w_hr"))
    for a, b in ((scheme, scheme2), (receiver, receiver2), (critic, critic2)):
        linear_state_dict_copy(a, b)
    batch = half_terminated(collect(recommendation_letter(num_envs=64, num_messages=3, seed=0), scheme, receiver))
    renamed = rename(batch, RENAMED)
    kwargs = dict(gamma=0.5, counterfactual=counterfactual, epsilon=0.2, num_messages=3)
    loss = ObedienceConstraintLoss(scheme, receiver, critic, **kwargs)
    loss2 = ObedienceConstraintLoss(scheme2, receiver2, critic2, **kwargs)
    loss2.set_keys(
        logits=("prof", "logits"), message=("prof", "letter"), action=("hr", "decision"), reward=("hr", "payoff"),
        action_value=("prof", "w_hr"), done="finished", terminated="ended",
    )
    torch.manual_seed(5)
    out = loss(batch)
    torch.manual_seed(5)
    out2 = loss2(renamed)
    for key in ("loss_obedience", "loss_critic", "constraint", "violation_rate"):
        torch.testing.assert_close(out[key], out2[key], rtol=0, atol=0)
    torch.testing.assert_close(loss.constraint_matrix(batch), loss2.constraint_matrix(renamed))
    torch.testing.assert_close(_scheme_grad(out, "loss_obedience", scheme), _scheme_grad(out2, "loss_obedience", scheme2))


def test_dial_set_keys_gives_the_same_numbers():
    torch.manual_seed(3)
    sender = make_dial_sender(VectorNet(2, 2))
    receiver = make_dial_receiver(ObservationMessageNet(VectorNet(2, 2)), 2)
    sender2 = make_dial_sender(
        VectorNet(2, 2), in_keys=[("prof", "obs")], logits_key=("prof", "m"), noise_key=("prof", "dru"),
        message_key=("prof", "letter"),
    )
    receiver2 = make_dial_receiver(
        ObservationMessageNet(VectorNet(2, 2)), 2, observation_key=("hr", "obs"), message_key=("prof", "letter"),
        action_value_key=("hr", "q"), action_key=("hr", "decision"),
    )
    linear_state_dict_copy(sender, sender2)
    linear_state_dict_copy(receiver, receiver2)
    batch = half_terminated(collect(recommendation_letter(num_envs=64, seed=0), sender, receiver))
    renamed = rename(batch, RENAMED)
    loss, loss2 = DIALLoss(sender, receiver, gamma=0.7), DIALLoss(sender2, receiver2, gamma=0.7)
    loss2.set_keys(
        message_logits=("prof", "m"), noise=("prof", "dru"), message=("prof", "letter"), action=("hr", "decision"),
        action_value=("hr", "q"), reward=("hr", "payoff"), done="finished", terminated="ended",
    )
    torch.manual_seed(9)
    out = loss(batch)
    torch.manual_seed(9)
    out2 = loss2(renamed)
    torch.testing.assert_close(out["loss_dial"], out2["loss_dial"], rtol=0, atol=0)
    torch.testing.assert_close(out["q_value"], out2["q_value"], rtol=0, atol=0)
    zero_grads(sender, sender2)
    out["loss_dial"].backward()
    out2["loss_dial"].backward()
    for p, p2 in zip(sender.parameters(), sender2.parameters()):
        torch.testing.assert_close(p.grad, p2.grad)


# ------------------------------------------------------------------------------------- purity of forward


@pytest.mark.parametrize(
    "which", ["sg", "oc_uniform", "oc_all_dual", "dial"],
)
def test_forward_does_not_modify_the_input(which):
    env = recommendation_letter(num_envs=32, num_messages=3, seed=0)
    if which == "dial":
        torch.manual_seed(0)
        sender = make_dial_sender(VectorNet(2, 3))
        receiver = make_dial_receiver(ObservationMessageNet(VectorNet(3, 2)), 2)
        loss = DIALLoss(sender, receiver, gamma=0.9)
        batch = collect(env, sender, receiver)
    else:
        scheme, receiver, critic = default_modules(3, w_key=W_RECEIVER_KEY if which != "sg" else ("sender", "action_value"))
        batch = collect(env, scheme, receiver)
        if which == "sg":
            loss = SignalingGradientLoss(scheme, receiver, critic, gamma=0.9)
        elif which == "oc_uniform":
            loss = ObedienceConstraintLoss(scheme, receiver, critic, gamma=0.9, epsilon=1.0)
        else:
            loss = ObedienceConstraintLoss(
                scheme, receiver, critic, gamma=0.9, counterfactual="all", mode="dual", num_messages=3
            )
    batch = half_terminated(batch)
    before = batch.clone(recurse=True)
    out = loss(batch)
    sum(v for k, v in out.items() if k.startswith("loss_")).backward()
    assert_same_tensordict(batch, before)
    if which.startswith("oc"):
        loss.constraint_matrix(batch)
        assert_same_tensordict(batch, before)


# ------------------------------------------------------------------------------------ gradient routing


def test_signaling_gradient_routing():
    scheme, receiver, critic = default_modules()
    loss = SignalingGradientLoss(scheme, receiver, critic, gamma=0.9)
    batch = half_terminated(collect(recommendation_letter(num_envs=256, seed=0), scheme, receiver))

    loss(batch)["loss_signaling"].backward()
    assert has_grad(scheme)
    assert no_grad(receiver), "the signaling gradient must not train the receiver"
    assert all(g is None for g in grads(critic)), "the signaling gradient must not train W"

    zero_grads(scheme, receiver, critic)
    loss(batch)["loss_critic"].backward()
    assert has_grad(critic)
    assert all(g is None for g in grads(scheme)) and all(g is None for g in grads(receiver))
    assert all(t.grad is None for t in loss.target_critic_network_params.values(True, True))


def test_signaling_gradient_critic_params_are_the_modules():
    """``convert_to_functional`` must keep the user's critic parameters (an optimizer over them trains W)."""
    scheme, receiver, critic = default_modules()
    loss = SignalingGradientLoss(scheme, receiver, critic)
    ids = {id(p) for p in critic.parameters()}
    assert ids == {id(p) for p in loss.critic_network_params.values(True, True)}
    assert not ids & {id(t) for t in loss.target_critic_network_params.values(True, True)}


def test_obedience_gradient_routing():
    scheme, receiver, critic = default_modules(w_key=W_RECEIVER_KEY)
    for counterfactual in ("uniform", "all"):
        loss = ObedienceConstraintLoss(scheme, receiver, critic, epsilon=5.0, gamma=0.9, counterfactual=counterfactual)
        batch = half_terminated(collect(recommendation_letter(num_envs=256, seed=0), scheme, receiver))
        zero_grads(scheme, receiver, critic)
        out = loss(batch)
        assert out["loss_obedience"] > 0
        out["loss_obedience"].backward()
        assert has_grad(scheme)
        assert all(g is None for g in grads(receiver)) and all(g is None for g in grads(critic))

        zero_grads(scheme, receiver, critic)
        loss(batch)["loss_critic"].backward()
        assert has_grad(critic)
        assert all(g is None for g in grads(scheme)) and all(g is None for g in grads(receiver))


def _receiver_critic(message_key=("sender", "message"), obs_key=("receiver", "observation"), value_key=("receiver", "state_value"), k=2):
    return make_value_critic(ObservationMessageNet(VectorNet(k, 1)), in_keys=[obs_key, message_key], out_key=value_key)


def test_receiver_a2c_never_reaches_the_scheme():
    scheme, receiver, _ = default_modules()
    critic = _receiver_critic()
    loss = make_receiver_a2c_loss(receiver, critic, gamma=0.5)
    # collected WITH autograd on, as a careless loop would: the stored logits carry the scheme's graph
    batch = collect(recommendation_letter(num_envs=128, seed=0), scheme, receiver, grad=True)
    batch = half_terminated(attach_next_message(batch, scheme))
    assert ("next", "sender", "message") in batch.keys(True, True)
    out = loss(batch)
    (out["loss_objective"] + out["loss_critic"]).backward()
    assert has_grad(receiver) and has_grad(critic)
    assert no_grad(scheme)


def test_sender_a2c_reaches_the_scheme_only():
    scheme, receiver, _ = default_modules()
    v = make_value_critic(VectorNet(2, 1), in_keys=[("sender", "observation")], out_key=("sender", "state_value"))
    loss = make_sender_a2c_loss(scheme, v, gamma=0.0)
    batch = collect(recommendation_letter(num_envs=128, seed=0), scheme, receiver)
    out = loss(batch)
    (out["loss_objective"] + out["loss_critic"]).backward()
    assert has_grad(scheme) and has_grad(v)
    assert no_grad(receiver)


def test_dial_gradient_reaches_receiver_and_sender_through_the_message():
    torch.manual_seed(0)
    sender = make_dial_sender(VectorNet(2, 2), noise_std=0.5)
    receiver = make_dial_receiver(ObservationMessageNet(VectorNet(2, 2)), 2)
    loss = DIALLoss(sender, receiver, gamma=0.5)
    batch = half_terminated(collect(recommendation_letter(num_envs=128, seed=0), sender, receiver))

    seen = []
    net = receiver.module[0].module
    handle = net.register_forward_hook(lambda m, args, out: seen.append(args[1]))
    try:
        out = loss(batch)
    finally:
        handle.remove()
    # the first receiver call is on the rebuilt message: equal to the sent one, and differentiable in the sender
    assert torch.equal(seen[0], batch["sender", "message"]) and seen[0].requires_grad
    out["loss_dial"].backward()
    assert has_grad(sender) and has_grad(receiver)
    assert all(t.grad is None for t in loss.target_receiver_network_params.values(True, True))


# ------------------------------------------------------------------- pi(. | o, every message), memoised


def _probs_one_by_one(receiver, batch: TensorDictBase, k: int) -> torch.Tensor:
    out = []
    for i in range(k):
        td = batch.select(("receiver", "observation")).clone()
        td.set(("sender", "message"), torch.eye(k)[i].expand(*batch.batch_size, k).clone())
        out.append(torch.softmax(receiver(td)["receiver", "logits"], -1))
    return torch.stack(out, -2)


def test_receiver_probs_all_messages_matches_calling_the_receiver_and_is_never_stale():
    torch.manual_seed(0)
    k = 3
    receiver = make_receiver_actor(ObservationMessageNet(VectorNet(2 + k, 2, hidden=(8,))))
    batch = TensorDict(
        {("receiver", "observation"): torch.randn(16, 2), ("sender", "message"): torch.eye(k)[torch.randint(k, (16,))]},
        batch_size=[16],
    )
    with torch.no_grad():
        first = receiver_probs_all_messages(receiver, batch, ("sender", "message"), k)
        torch.testing.assert_close(first, _probs_one_by_one(receiver, batch, k))
        # an optimizer-like in-place step on the receiver: the table must follow
        for p in receiver.parameters():
            p.add_(0.5)
        second = receiver_probs_all_messages(receiver, batch, ("sender", "message"), k)
        torch.testing.assert_close(second, _probs_one_by_one(receiver, batch, k))
        assert not torch.allclose(first, second)
        # an in-place change of the observation: same
        batch["receiver", "observation"].mul_(-1.0)
        third = receiver_probs_all_messages(receiver, batch, ("sender", "message"), k)
        torch.testing.assert_close(third, _probs_one_by_one(receiver, batch, k))
    # with autograd: differentiable in the receiver's parameters
    probs = receiver_probs_all_messages(receiver, batch, ("sender", "message"), k)
    probs[..., 0].sum().backward()
    assert has_grad(receiver)


# ------------------------------------------------------------------------------------ the ST message


def test_rebuilt_straight_through_message_equals_the_sent_one():
    scheme, receiver, critic = default_modules(3)
    batch = collect(recommendation_letter(num_envs=4096, num_messages=3, seed=0), scheme, receiver)
    logits = scheme.logits_module(batch.select(("sender", "observation")).clone())["sender", "logits"]
    rebuilt = straight_through_one_hot(logits, batch["sender", "gumbel"])
    assert torch.equal(rebuilt, batch["sender", "message"])
    assert rebuilt.requires_grad

    # what SignalingGradientLoss feeds the receiver: the sent message, carrying the scheme's gradient
    seen = []
    handle = receiver.module[0].module.register_forward_hook(lambda m, args, out: seen.append(args[1]))
    try:
        SignalingGradientLoss(scheme, receiver, critic, gamma=0.0)(batch)
    finally:
        handle.remove()
    st = [m for m in seen if m.shape == batch["sender", "message"].shape]
    assert len(st) == 1 and torch.equal(st[0], batch["sender", "message"]) and st[0].requires_grad


def _manual_signaling_gradient(batch, phi, pi, w_sender, receiver_weight, receiver_coeff):
    """Eq. 2 with the straight-through message, per sample, in float64, without autograd:
    ``mean_t A_t [(onehot(sigma_t) - phi(s_t)) + c * J_softmax(y_t) (d log pi(a_t|m) / dm)]`` scattered to
    column ``s_t`` of the scheme's weight (``d logits / d weight[:, s] = 1[s = s_t]``)."""
    s = batch["sender", "state"]
    sigma = batch["sender", "message"].to(F64)
    a = batch["receiver", "action"].to(F64)
    g = batch["sender", "gumbel"].to(F64)
    phi_t, w_t = phi[s], w_sender[s]  # [T, K], [T, A]
    value = torch.einsum("tk,ka,ta->t", phi_t, pi, w_t)
    adv = (w_t * a).sum(-1) - value
    score = sigma - phi_t
    y = torch.softmax(phi_t.log() + g, -1)
    pi_sent = sigma @ pi  # pi(. | sigma_t)
    v = a @ receiver_weight - pi_sent @ receiver_weight  # d log pi(a_t | m) / dm at m = sigma_t
    st = y * v - y * (y * v).sum(-1, keepdim=True)
    per_sample = adv[:, None] * (score + receiver_coeff * st)  # [T, K]
    grad = torch.zeros(phi.shape[1], phi.shape[0], dtype=F64)
    grad.index_add_(1, s, per_sample.T)
    return grad / s.numel()


@pytest.mark.parametrize("receiver_coeff", [0.0, 1.0, 2.0])
def test_signaling_gradient_matches_manual_computation(receiver_coeff):
    """On one batch, the loss's gradient is exactly eq. 2: the score term plus c times the ST term."""
    scheme, receiver, critic = tabular_modules(PHI3, PI3, U_SENDER)
    batch = collect(recommendation_letter(num_envs=2048, num_messages=3, seed=1), scheme, receiver)
    loss = SignalingGradientLoss(scheme, receiver, critic, gamma=0.0, receiver_coeff=receiver_coeff)
    out = loss(batch)
    got = -_scheme_grad(out, "loss_signaling", scheme).to(F64)
    expected = _manual_signaling_gradient(batch, PHI3, PI3, U_SENDER, PI3.log().T, receiver_coeff)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)
    if receiver_coeff:
        # the log-pi path exists: it changes the gradient
        st_only = expected - _manual_signaling_gradient(batch, PHI3, PI3, U_SENDER, PI3.log().T, 0.0)
        assert st_only.abs().max() > 1e-3


@pytest.mark.parametrize("loss_cls", [SignalingGradientLoss, ObedienceConstraintLoss], ids=lambda c: c.__name__)
@pytest.mark.parametrize("gamma", [0.0, 0.5])
def test_critic_td_loss_has_the_expected_sarsa_target(loss_cls, gamma):
    """loss_critic = mean_t (W(s_t, a_t) - y_t)^2 with y_t = r_t + gamma (1 - term_t) sum phi(s') pi W_target(s')."""
    sg = loss_cls is SignalingGradientLoss
    utility = U_SENDER if sg else U_RECEIVER
    w_key = ("sender", "action_value") if sg else W_RECEIVER_KEY
    torch.manual_seed(0)
    w_table = utility + 0.3 * torch.randn(2, 2, dtype=F64)  # a critic that is not exact: the loss is not zero
    scheme, receiver, critic = tabular_modules(PHI3, PI3, w_table, w_key=w_key)
    batch = half_terminated(collect(recommendation_letter(num_envs=512, num_messages=3, seed=0), scheme, receiver))
    loss = loss_cls(scheme, receiver, critic, gamma=gamma, critic_coeff=1.0)
    with torch.no_grad():  # a target network that differs from the online one
        for t in loss.target_critic_network_params.values(True, True):
            t.mul_(0.5)
    w = only_param(critic).detach().T.to(F64)  # [S, A], float32-rounded like the net's
    w_target = 0.5 * w
    s = batch["sender", "state"]
    a = batch["receiver", "action"].to(F64)
    reward = batch["next", "sender" if sg else "receiver", "reward"].squeeze(-1).to(F64)
    alive = (~batch["next", "terminated"].squeeze(-1)).to(F64)
    v_next = (PHI3 @ PI3 * w_target).sum(-1)[s]  # the next state repeats s in this env
    target = reward + gamma * alive * v_next
    expected = ((w[s] * a).sum(-1) - target).pow(2).mean()
    torch.testing.assert_close(loss(batch)["loss_critic"].to(F64), expected, rtol=1e-4, atol=1e-6)
    if gamma == 0.0:  # the exact W^k = w^k(s, a) is the fixed point of the one-step TD loss
        _, _, exact_critic = tabular_modules(PHI3, PI3, utility, w_key=w_key)
        assert loss_cls(scheme, receiver, exact_critic, gamma=0.0)(batch)["loss_critic"] < 1e-12


# --------------------------------------------------------------------------- exactness, tabular one step


N_EXACT = 200_000


@pytest.fixture(scope="module")
def tabular_batch():
    """200k Recommendation-Letter students under the fixed tabular (PHI3, PI3), three messages."""
    scheme, receiver, _ = tabular_modules(PHI3, PI3, U_RECEIVER, w_key=W_RECEIVER_KEY)
    torch.manual_seed(0)
    return collect(recommendation_letter(num_envs=N_EXACT, num_messages=3, seed=7), scheme, receiver)


def _message_values(pi: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return w @ pi.T  # q[s, sigma] = sum_a pi(a|sigma) W(s, a)


def test_constraint_matrix_is_unbiased_for_eq4(tabular_batch):
    scheme, receiver, critic = tabular_modules(PHI3, PI3, U_RECEIVER, w_key=W_RECEIVER_KEY)
    loss = ObedienceConstraintLoss(scheme, receiver, critic, counterfactual="all", gamma=0.0)
    got = loss.constraint_matrix(tabular_batch).detach().to(F64)
    exact = obedience_constraints(PRIOR, U_RECEIVER, PHI3, PI3)
    # per-state term x(s)[k, l] = phi(k|s) (q(s,k) - q(s,l)); its exact spread gives the standard error
    q = _message_values(PI3, U_RECEIVER)
    x = PHI3[:, :, None] * (q[:, :, None] - q[:, None, :])  # [S, K, K]
    torch.testing.assert_close((PRIOR[:, None, None] * x).sum(0), exact)  # eq. 4 by enumeration
    se = ((PRIOR[:, None, None] * x**2).sum(0) - exact**2).clamp_min(0).div(N_EXACT).sqrt()
    off = ~torch.eye(3, dtype=torch.bool)
    assert (exact[off].abs() > 10 * se[off]).any()  # the test can tell a wrong matrix from the right one
    assert ((got - exact)[off].abs() <= 5 * se[off] + 1e-6).all(), f"{got}\nvs exact\n{exact}\nse {se}"
    assert torch.equal(got.diagonal(), torch.zeros(3, dtype=F64))


def test_uniform_constraint_estimate_mean(tabular_batch):
    """The paper's estimator (eq. 6): sigma_t ~ phi, c_t weighted by phi(sigma_t|s_t), sigma' uniform among the
    others: E[c_t] = sum_s P(s) sum_sigma phi(sigma|s)^2 mean_{sigma' != sigma} (q(s,sigma) - q(s,sigma'))."""
    scheme, receiver, critic = tabular_modules(PHI3, PI3, U_RECEIVER, w_key=W_RECEIVER_KEY)
    loss = ObedienceConstraintLoss(scheme, receiver, critic, counterfactual="uniform", gamma=0.0)
    torch.manual_seed(1)
    got = loss(tabular_batch)["constraint"].item()
    q = _message_values(PI3, U_RECEIVER)
    k = q.shape[1]
    diff = q[:, :, None] - q[:, None, :]  # [S, sigma, sigma']
    c = PHI3[:, :, None] * diff  # c_t given (s, sigma, sigma')
    other = (~torch.eye(k, dtype=torch.bool)).to(F64) / (k - 1)  # uniform over sigma' != sigma
    weight = PRIOR[:, None, None] * PHI3[:, :, None] * other  # P(s) phi(sigma|s) / (K - 1)
    mean = (weight * c).sum().item()
    se = math.sqrt(((weight * c**2).sum().item() - mean**2) / N_EXACT)
    assert abs(got - mean) <= 5 * se + 1e-6, (got, mean, se)
    # and it is not eq. 4's mean over pairs (the phi weight enters twice): the test tells them apart
    pair_mean = obedience_constraints(PRIOR, U_RECEIVER, PHI3, PI3)[~torch.eye(k, dtype=torch.bool)].mean().item()
    assert abs(pair_mean - mean) > 10 * se


def _exact_sender_gradient(scheme_weight: torch.Tensor, pi: torch.Tensor) -> torch.Tensor:
    w = scheme_weight.detach().to(F64).requires_grad_(True)
    phi = torch.softmax(w.T, -1)
    value = (PRIOR[:, None] * (phi @ pi) * U_SENDER).sum()
    (grad,) = torch.autograd.grad(value, w)
    return grad


def _chunked_gradients(loss, scheme, batch, chunks: int) -> torch.Tensor:
    out = []
    for part in batch.split(batch.shape[0] // chunks):
        out.append(-_scheme_grad(loss(part), "loss_signaling", scheme).to(F64))
    return torch.stack(out)


def test_score_function_signaling_gradient_is_unbiased(tabular_batch):
    """With c = 0 and the exact W^i, E[-grad loss_signaling] = grad_eta V^i(phi_eta, pi)."""
    scheme, receiver, critic = tabular_modules(PHI3, PI3, U_SENDER)
    loss = SignalingGradientLoss(scheme, receiver, critic, receiver_coeff=0.0, gamma=0.0)
    g = _chunked_gradients(loss, scheme, tabular_batch, chunks=20)
    mean, se = g.mean(0), g.std(0) / math.sqrt(g.shape[0])
    exact = _exact_sender_gradient(only_param(scheme), PI3)
    assert exact.abs().max() > 20 * se.max()
    assert ((mean - exact).abs() <= 5 * se + 1e-5).all(), f"{mean}\nvs exact\n{exact}\nse {se}"
    # the diagnostic sender_value is the batch mean of V^i(s_t), unbiased for the exact payoff
    value = loss(tabular_batch)["sender_value"].item()
    v_s = (PHI3 @ PI3 * U_SENDER).sum(-1)  # V^i(s)
    exact_value, _ = exact_payoffs(PRIOR, U_SENDER, U_RECEIVER, PHI3, PI3)
    se_value = math.sqrt(((PRIOR * v_s**2).sum().item() - exact_value**2) / N_EXACT)
    assert abs(value - exact_value) <= 5 * se_value + 1e-6


def test_straight_through_signaling_gradient_points_uphill(tabular_batch):
    """With c = 1 the ST term is biased, but in this game (the sender wants "hire", the receiver hires more
    on higher messages) it must still correlate with the exact gradient of the sender's payoff."""
    scheme, receiver, critic = tabular_modules(PHI3, PI3, U_SENDER)
    exact = _exact_sender_gradient(only_param(scheme), PI3).flatten()
    g = {}
    for c in (0.0, 1.0, 2.0):
        loss = SignalingGradientLoss(scheme, receiver, critic, receiver_coeff=c, gamma=0.0)
        g[c] = _chunked_gradients(loss, scheme, tabular_batch, chunks=4).mean(0).flatten()
        assert torch.cosine_similarity(g[c], exact, dim=0) > 0.9  # measured: > 0.998 over seeds
    # the straight-through term alone (c = 1 minus c = 0) also points uphill here (measured: cos ~ 0.99)
    st = g[1.0] - g[0.0]
    assert st.norm() > 0.1 * exact.norm() and torch.cosine_similarity(st, exact, dim=0) > 0.9
    torch.testing.assert_close(g[2.0] - g[0.0], 2 * st, rtol=1e-3, atol=1e-6)  # linear in c



def test_expected_signaling_gradient_is_the_exact_gradient_on_the_batch_states(tabular_batch):
    """gradient="expected" with c = 0 and the exact W^i: -grad loss_signaling is grad_eta of the batch states' mean
    V^i(s_t) = sum_sigma phi(sigma|s_t) sum_a pi(a|sigma) w(s_t, a), exactly (no message or action noise left)."""
    scheme, receiver, critic = tabular_modules(PHI3, PI3, U_SENDER)
    loss = SignalingGradientLoss(scheme, receiver, critic, receiver_coeff=0.0, gamma=0.0, gradient="expected")
    batch = tabular_batch[:4096]
    got = -_scheme_grad(loss(batch), "loss_signaling", scheme).to(F64)
    weight = only_param(scheme).detach().to(F64).requires_grad_(True)
    s = batch["sender", "state"]
    value = ((torch.softmax(weight.T, -1) @ PI3 * U_SENDER)[s]).sum(-1).mean()
    (exact,) = torch.autograd.grad(value, weight)
    assert exact.abs().max() > 1e-2
    torch.testing.assert_close(got, exact, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("receiver_coeff", [0.0, 2.0])
def test_expected_signaling_gradient_is_the_sampled_one_in_expectation(tabular_batch, receiver_coeff):
    """Both estimators have the same mean over the messages and actions drawn (the expected one conditions on the
    states, the sent message and its Gumbel noise), and the expected one has a smaller spread over batches."""
    scheme, receiver, critic = tabular_modules(PHI3, PI3, U_SENDER)
    g = {
        name: _chunked_gradients(
            SignalingGradientLoss(scheme, receiver, critic, receiver_coeff=receiver_coeff, gamma=0.0, gradient=name),
            scheme, tabular_batch, chunks=20,
        )
        for name in ("sampled", "expected")
    }
    difference = g["sampled"] - g["expected"]  # the same states, messages and noise: only the draws differ
    mean, se = difference.mean(0), difference.std(0) / math.sqrt(difference.shape[0])
    assert ((mean.abs() <= 5 * se + 1e-5)).all(), f"{mean}\nse {se}"
    # the spread left (c = 2: the Gumbel noise of the straight-through term) is under half the sampled one's
    assert g["expected"].var(0).sum() < 0.5 * g["sampled"].var(0).sum()


def test_signaling_gradient_estimator_must_be_known():
    with pytest.raises(ValueError, match="gradient='exact'.*sampled"):
        SignalingGradientLoss(*default_modules(), gradient="exact")


# ------------------------------------------------------------------------------------ obedience modes


def _oc_setup(num_envs=512, **kwargs):
    scheme, receiver, critic = tabular_modules(PHI3[:, :2] / PHI3[:, :2].sum(-1, keepdim=True), PI3[:2], U_RECEIVER,
                                               w_key=W_RECEIVER_KEY)
    batch = collect(recommendation_letter(num_envs=num_envs, seed=3), scheme, receiver)
    return scheme, receiver, critic, batch


@pytest.mark.parametrize("counterfactual", ["uniform", "all"])
def test_lagrangian_loss_is_a_hinge_on_the_estimates(counterfactual):
    scheme, receiver, critic, batch = _oc_setup()
    loss = ObedienceConstraintLoss(scheme, receiver, critic, epsilon=-100.0, counterfactual=counterfactual, gamma=0.0)
    out = loss(batch)
    assert out["loss_obedience"] == 0 and out["violation_rate"] == 0
    loss.epsilon = 100.0
    torch.manual_seed(0)
    out = loss(batch)
    assert out["loss_obedience"] > 0 and out["violation_rate"] == 1
    if counterfactual == "uniform":
        expected = 5.0 * (100.0 - out["constraint"])
    else:
        matrix = loss.constraint_matrix(batch).detach()
        expected = 5.0 * (100.0 - matrix[~torch.eye(2, dtype=torch.bool)]).sum()
    torch.testing.assert_close(out["loss_obedience"].detach(), expected)
    assert out["lagrange_multiplier"] == 5.0


def test_stringent_mode_is_a_hinge_per_sample():
    scheme, receiver, critic, batch = _oc_setup(num_envs=2048)
    phi = torch.softmax(only_param(scheme).detach().T.to(F64), -1)
    pi = torch.softmax(only_param(receiver).detach().T.to(F64), -1)
    q = _message_values(pi, U_RECEIVER)
    s, sent = batch["sender", "state"], batch["sender", "message"].argmax(-1)
    c_t = phi[s, sent] * (q[s, sent] - q[s, 1 - sent])  # two messages: sigma' is the other one
    eps = c_t.mean().item() - 0.01  # the batch mean satisfies the constraint, some samples do not
    assert (c_t < eps).any()
    kwargs = dict(epsilon=eps, lagrange_multiplier=3.0, gamma=0.0)
    stringent = ObedienceConstraintLoss(scheme, receiver, critic, mode="stringent", **kwargs)(batch)
    lagrangian = ObedienceConstraintLoss(scheme, receiver, critic, mode="lagrangian", **kwargs)(batch)
    torch.testing.assert_close(stringent["constraint"].to(F64), c_t.mean(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        stringent["loss_obedience"].detach().to(F64), 3.0 * torch.relu(eps - c_t).mean(), rtol=1e-4, atol=1e-6
    )
    torch.testing.assert_close(stringent["violation_rate"].to(F64), (c_t < eps).to(F64).mean())
    assert lagrangian["loss_obedience"] == 0 and stringent["loss_obedience"] > 0


def test_dual_mode_multiplier_updates():
    scheme, receiver, critic, batch = _oc_setup()
    loss = ObedienceConstraintLoss(
        scheme, receiver, critic, mode="dual", num_messages=2, lagrange_multiplier=1.0, dual_lr=0.1, gamma=0.0,
        epsilon=10.0,
    )
    assert loss.lagrange_multiplier.shape == (2,)
    before = loss.lagrange_multiplier.clone()
    out = loss(batch)
    # forward never changes the multipliers: the update is an explicit step, as SoftUpdate.step() for targets
    assert torch.equal(loss.lagrange_multiplier, before)
    assert out["constraint_estimates"].shape == (2,) and not out["constraint_estimates"].requires_grad
    # violated (estimates << epsilon): lambda goes up, by dual_lr * (epsilon - C_sigma)
    loss.update_multipliers(out)
    after = loss.lagrange_multiplier.clone()
    torch.testing.assert_close(after, (before - 0.1 * (out["constraint_estimates"] - 10.0)).clamp_min(0.0))
    assert (after > before).all() and ((after - before - 0.1 * 10.0).abs() < 0.1 * 2.0).all()
    assert out["lagrange_multiplier"] == 1.0  # the loss used the multipliers from before the update
    # the dual loss is linear in the estimates with the (old) multipliers: -sum lambda (C_sigma - eps) > 0 here
    assert out["loss_obedience"] > 0
    # the next forward reads the updated multipliers
    assert loss(batch)["lagrange_multiplier"] == after.mean()
    # satisfied by far: lambda goes down but never below zero
    loss.epsilon = -100.0
    for _ in range(3):
        loss.update_multipliers(loss(batch))
    assert torch.equal(loss.lagrange_multiplier, torch.zeros(2))
    with pytest.raises(KeyError, match="constraint_estimates"):
        loss.update_multipliers(out.exclude("constraint_estimates"))


def test_update_multipliers_is_a_no_op_with_a_fixed_multiplier():
    scheme, receiver, critic, batch = _oc_setup()
    loss = ObedienceConstraintLoss(scheme, receiver, critic, epsilon=10.0, gamma=0.0)
    out = loss(batch)
    assert "constraint_estimates" not in out.keys()
    loss.update_multipliers(out)
    assert torch.equal(loss.lagrange_multiplier, torch.full((1,), 5.0))


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(mode="hard"), "mode"),
        (dict(counterfactual="every"), "counterfactual"),
        (dict(lagrange_multiplier=-1.0), "lagrange_multiplier"),
        (dict(gamma=1.5), "gamma"),
        (dict(gamma=-0.1), "gamma"),
        (dict(dual_lr=0.0), "dual_lr"),
        (dict(mode="dual"), "num_messages"),
        (dict(mode="dual", num_messages=1), "num_messages"),
    ],
)
def test_obedience_bad_arguments(kwargs, name):
    scheme, receiver, critic = default_modules(w_key=W_RECEIVER_KEY)
    with pytest.raises(ValueError, match=name):
        ObedienceConstraintLoss(scheme, receiver, critic, **kwargs)


@pytest.mark.parametrize("kwargs, name", [(dict(gamma=1.01), "gamma"), (dict(temperature=0.0), "temperature")])
def test_signaling_gradient_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        SignalingGradientLoss(*default_modules(), **kwargs)


def test_dial_bad_arguments():
    with pytest.raises(ValueError, match="gamma"):
        DIALLoss(make_dial_sender(VectorNet(2, 2)), make_dial_receiver(ObservationMessageNet(VectorNet(2, 2)), 2), gamma=2.0)


# ---------------------------------------------------------------------------------------- SoftUpdate


@pytest.mark.parametrize("loss_cls", LOSSES, ids=lambda c: c.__name__)
def test_soft_update_moves_targets_toward_online(loss_cls):
    scheme, receiver, critic = default_modules()
    if loss_cls is DIALLoss:
        loss = DIALLoss(make_dial_sender(VectorNet(2, 2)), make_dial_receiver(ObservationMessageNet(VectorNet(2, 2)), 2))
        online, target = loss.receiver_network_params, loss.target_receiver_network_params
    else:
        loss = loss_cls(scheme, receiver, critic)
        online, target = loss.critic_network_params, loss.target_critic_network_params
    updater = SoftUpdate(loss, tau=0.25)
    for a, b in zip(online.values(True, True), target.values(True, True)):
        torch.testing.assert_close(a.data, b.data)  # targets start as copies
    with torch.no_grad():
        for p in online.values(True, True):
            p.add_(1.0)
    old_target = [t.clone() for t in target.values(True, True)]
    updater.step()
    for p, t, t0 in zip(online.values(True, True), target.values(True, True), old_target):
        torch.testing.assert_close(t, 0.75 * t0 + 0.25 * p.detach())
        assert not torch.equal(t, t0)


# -------------------------------------------------- a user's own environment, with its own key names


class SeedSellerEnv(EnvBase):
    """A forecaster who sells seeds sees the season (0: drought, prob. 2/3; 1: rain, 1/3) and sends a
    signal; the farmer, seeing only the signal, plants (1) or not (0). The forecaster earns 1 per planting;
    the farmer earns +1 for planting in rain and -1 in drought. (The Recommendation Letter under new names:
    without information the farmer never plants; the best obeyed scheme earns the forecaster 2/3.)"""

    PRIOR = (2 / 3, 1 / 3)
    FORECASTER = ((0.0, 1.0), (0.0, 1.0))
    FARMER = ((0.0, -1.0), (0.0, 1.0))

    def __init__(self, num_envs: int, seed: int = 0):
        super().__init__(batch_size=torch.Size([num_envs]))
        n = num_envs
        self.observation_spec = Composite(
            forecaster=Composite(obs=OneHot(2, shape=(n, 2), dtype=torch.float32), shape=(n,)),
            farmer=Composite(obs=Unbounded(shape=(n, 0)), shape=(n,)),
            shape=(n,),
        )
        self.action_spec = Composite(
            forecaster=Composite(signal=OneHot(2, shape=(n, 2), dtype=torch.float32), shape=(n,)),
            farmer=Composite(choice=OneHot(2, shape=(n, 2), dtype=torch.float32), shape=(n,)),
            shape=(n,),
        )
        self.reward_spec = Composite(
            forecaster=Composite(payoff=Unbounded(shape=(n, 1)), shape=(n,)),
            farmer=Composite(payoff=Unbounded(shape=(n, 1)), shape=(n,)),
            shape=(n,),
        )
        self.done_spec = Composite(
            {k: Categorical(2, shape=(n, 1), dtype=torch.bool) for k in ("done", "terminated", "truncated")},
            shape=(n,),
        )
        self.prior = torch.tensor(self.PRIOR)
        self.u_forecaster, self.u_farmer = torch.tensor(self.FORECASTER), torch.tensor(self.FARMER)
        self.rng = torch.Generator()
        self.set_seed(seed)

    def _observe(self, season: torch.Tensor) -> TensorDict:
        n = self.batch_size[0]
        return TensorDict(
            {
                ("forecaster", "obs"): torch.nn.functional.one_hot(season, 2).float(),
                ("farmer", "obs"): torch.zeros(n, 0),
            },
            batch_size=self.batch_size,
        )

    def _reset(self, tensordict=None, **kwargs):
        season = torch.multinomial(self.prior, self.batch_size[0], replacement=True, generator=self.rng)
        out = self._observe(season)
        for k in ("done", "terminated", "truncated"):
            out.set(k, torch.zeros(*self.batch_size, 1, dtype=torch.bool))
        return out

    def _step(self, tensordict):
        season = tensordict["forecaster", "obs"].argmax(-1)
        choice = tensordict["farmer", "choice"]
        out = self._observe(season)
        out.set(("forecaster", "payoff"), (self.u_forecaster[season] * choice).sum(-1, keepdim=True))
        out.set(("farmer", "payoff"), (self.u_farmer[season] * choice).sum(-1, keepdim=True))
        out.set("done", torch.ones(*self.batch_size, 1, dtype=torch.bool))
        out.set("terminated", torch.ones(*self.batch_size, 1, dtype=torch.bool))
        out.set("truncated", torch.zeros(*self.batch_size, 1, dtype=torch.bool))
        return out

    def _set_seed(self, seed):
        self.rng.manual_seed(int(seed or 0))


def _exact(env: SeedSellerEnv, scheme, receiver) -> tuple[float, float, float]:
    phi, pi = tabulate_one_step_policies(
        scheme.logits_module, receiver, num_states=2, num_messages=2,
        sender_observation_key=("forecaster", "obs"), receiver_observation_key=("farmer", "obs"),
        message_key=("forecaster", "signal"), scheme_logits_key=("forecaster", "logits"),
        receiver_logits_key=("farmer", "logits"),
    )
    sender, receiver_value = exact_payoffs(env.PRIOR, env.FORECASTER, env.FARMER, phi, pi)
    return sender, receiver_value, obedience_violation(env.PRIOR, env.FARMER, phi, pi)


def test_training_on_a_custom_environment_with_custom_keys():
    torch.manual_seed(0)
    env = SeedSellerEnv(num_envs=256, seed=0)
    check_env_specs(env)
    signal, choice = ("forecaster", "signal"), ("farmer", "choice")
    scheme = make_signaling_scheme(
        VectorNet(2, 2, bias=False), in_keys=[("forecaster", "obs")], logits_key=("forecaster", "logits"),
        message_key=signal, gumbel_key=("forecaster", "gumbel"),
    )
    receiver = make_receiver_actor(
        ObservationMessageNet(VectorNet(2, 2, bias=False)), observation_key=("farmer", "obs"), message_key=signal,
        logits_key=("farmer", "logits"), action_key=choice, log_prob_key=("farmer", "choice_log_prob"),
    )
    v_farmer = make_value_critic(
        ObservationMessageNet(VectorNet(2, 1)), in_keys=[("farmer", "obs"), signal], out_key=("farmer", "value")
    )
    w_forecaster = make_action_value_critic(VectorNet(2, 2), in_keys=[("forecaster", "obs")], out_key=("forecaster", "w"))
    w_farmer = make_action_value_critic(VectorNet(2, 2), in_keys=[("forecaster", "obs")], out_key=("forecaster", "w_farmer"))

    receiver_loss = make_receiver_a2c_loss(
        receiver, v_farmer, gamma=0.0, action_key=choice, reward_key=("farmer", "payoff"),
        value_key=("farmer", "value"), log_prob_key=("farmer", "choice_log_prob"),
    )
    sg = SignalingGradientLoss(scheme, receiver, w_forecaster, gamma=0.0, receiver_coeff=2.0)
    sg.set_keys(logits=("forecaster", "logits"), message=signal, gumbel=("forecaster", "gumbel"), action=choice,
                reward=("forecaster", "payoff"), action_value=("forecaster", "w"))
    oc = ObedienceConstraintLoss(scheme, receiver, w_farmer, gamma=0.0, epsilon=0.3, lagrange_multiplier=5.0)
    oc.set_keys(logits=("forecaster", "logits"), message=signal, action=choice, reward=("farmer", "payoff"),
                action_value=("forecaster", "w_farmer"))
    updaters = [SoftUpdate(sg, tau=0.05), SoftUpdate(oc, tau=0.05)]
    opt_receiver = torch.optim.Adam(list(receiver.parameters()) + list(v_farmer.parameters()), lr=2e-2)
    opt_sender = torch.optim.Adam(
        [{"params": scheme.parameters(), "lr": 3e-2},
         {"params": list(w_forecaster.parameters()) + list(w_farmer.parameters()), "lr": 5e-2}]
    )

    for it in range(300):
        batch = collect(env, scheme, receiver)
        if it % 2 == 0:
            out = receiver_loss(attach_next_message(batch, scheme))
            total, opt = out["loss_objective"] + out["loss_critic"], opt_receiver
        else:
            total = sum(v for o in (sg(batch), oc(batch)) for k, v in o.items() if k.startswith("loss_"))
            opt = opt_sender
        opt.zero_grad()
        total.backward()
        opt.step()
        if it % 2 == 1:
            for u in updaters:
                u.step()

    sender_value, farmer_value, violation = _exact(env, scheme, receiver)
    # Without information the farmer never plants and the forecaster earns 0; the LP optimum is 2/3 (seeds
    # 0-15 end in [0.52, 0.60]). A farmer who plants regardless, with probability p, would give the
    # forecaster p but himself -p/3: a high forecaster payoff with a farmer no worse off than uninformed
    # needs a signal that is both informative and obeyed.
    assert sender_value > 0.45, (sender_value, farmer_value, violation)
    assert farmer_value > -0.05, (sender_value, farmer_value, violation)
    assert violation < 0.05, (sender_value, farmer_value, violation)


# ------------------------------------------------------------- TorchRL citizenship: targets, state, keys, params


def _sender_loss(loss_cls, **kwargs):
    if loss_cls is SignalingGradientLoss:
        scheme, receiver, critic = default_modules(3)
    else:
        scheme, receiver, critic = default_modules(3, w_key=W_RECEIVER_KEY)
        kwargs.setdefault("num_messages", 3)
    return loss_cls(scheme, receiver, critic, **kwargs), scheme, receiver, critic


def _used_loss(loss_cls):
    """A loss that has run forward and backward once with a bootstrapped target (gamma > 0)."""
    env = recommendation_letter(num_envs=32, num_messages=3, seed=0)
    if loss_cls is DIALLoss:
        torch.manual_seed(0)
        sender = make_dial_sender(VectorNet(2, 3))
        receiver = make_dial_receiver(ObservationMessageNet(VectorNet(3, 2)), 2)
        loss = DIALLoss(sender, receiver, gamma=0.9)
        batch = collect(env, sender, receiver)
        targets = loss.target_receiver_network_params
    else:
        loss, scheme, receiver, _ = _sender_loss(loss_cls, gamma=0.9)
        batch = collect(env, scheme, receiver)
        targets = loss.target_critic_network_params
    out = loss(half_terminated(batch))
    sum(v for k, v in out.items() if k.startswith("loss_")).backward()
    return loss, targets


@pytest.mark.parametrize("loss_cls", LOSSES, ids=lambda c: c.__name__)
def test_soft_update_after_forward_and_after_deepcopy(loss_cls):
    """Target parameters stay plain tensors outside any graph, so a SoftUpdate built after a forward, or on a
    deepcopy of a used loss, works (as with TorchRL's DQNLoss)."""
    import copy

    loss, targets = _used_loss(loss_cls)
    for t in targets.values(True, True):
        assert not t.requires_grad and not isinstance(t, nn.Parameter) and t.grad_fn is None
    SoftUpdate(loss, tau=0.5).step()
    twin = copy.deepcopy(loss)
    updater = SoftUpdate(twin, tau=0.5)
    twin_targets = twin.target_receiver_network_params if loss_cls is DIALLoss else twin.target_critic_network_params
    online = twin.receiver_network_params if loss_cls is DIALLoss else twin.critic_network_params
    with torch.no_grad():
        for p in online.values(True, True):
            p.add_(1.0)
    before = [t.clone() for t in twin_targets.values(True, True)]
    original = [t.clone() for t in targets.values(True, True)]
    updater.step()
    for t, t0, p in zip(twin_targets.values(True, True), before, online.values(True, True)):
        torch.testing.assert_close(t, 0.5 * t0 + 0.5 * p.detach())
    for t, t0 in zip(targets.values(True, True), original):  # the copy's update leaves the original alone
        assert torch.equal(t, t0)


@pytest.mark.parametrize("loss_cls", [SignalingGradientLoss, ObedienceConstraintLoss], ids=lambda c: c.__name__)
def test_trainable_parameters_are_the_scheme_and_the_own_critic(loss_cls):
    loss, scheme, receiver, critic = _sender_loss(loss_cls)
    ids = [id(p) for p in loss.parameters()]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in [*scheme.parameters(), *critic.parameters()]}
    names = [n for n, _ in loss.named_parameters()]
    assert all(n.startswith(("scheme_network.", "critic_network_params.")) for n in names), names
    assert not {id(p) for p in receiver.parameters()} & set(ids)
    assert "lagrange_multiplier" not in names


def test_sg_and_oc_parameters_combine_without_duplicates():
    scheme, receiver, w_sender = default_modules(3)
    w_receiver = make_action_value_critic(VectorNet(2, 2), out_key=W_RECEIVER_KEY)
    sg = SignalingGradientLoss(scheme, receiver, w_sender)
    oc = ObedienceConstraintLoss(scheme, receiver, w_receiver)
    params = list(dict.fromkeys([*sg.parameters(), *oc.parameters()]))  # the scheme is shared by both
    assert {id(p) for p in params} == {id(p) for m in (scheme, w_sender, w_receiver) for p in m.parameters()}
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        torch.optim.Adam(params)


@pytest.mark.parametrize("loss_cls", [SignalingGradientLoss, ObedienceConstraintLoss], ids=lambda c: c.__name__)
def test_a_critic_on_another_key_fails_with_a_clear_message(loss_cls):
    scheme, receiver, _ = default_modules()
    wrong = ("sender", "receiver_action_value") if loss_cls is SignalingGradientLoss else ("sender", "action_value")
    loss = loss_cls(scheme, receiver, make_action_value_critic(VectorNet(2, 2), out_key=wrong))
    batch = collect(recommendation_letter(num_envs=8, seed=0), scheme, receiver)
    with pytest.raises(ValueError, match=r"critic_network does not write the action_value key .*out_key=.*set_keys"):
        loss(batch)
    if loss_cls is ObedienceConstraintLoss:
        with pytest.raises(ValueError, match="critic_network does not write"):
            loss.constraint_matrix(batch)
    loss.set_keys(action_value=wrong)  # the fix the message names
    loss(batch)


def test_two_instances_never_share_state():
    """No result is kept between calls or shared across instances: a second loss on the same networks and batch
    recomputes from the current parameters, even after a change that leaves version counters alone (``.data``)."""
    scheme, receiver, critic = default_modules(3, w_key=W_RECEIVER_KEY)
    batch = half_terminated(collect(recommendation_letter(num_envs=64, num_messages=3, seed=0), scheme, receiver))
    first = ObedienceConstraintLoss(scheme, receiver, critic, gamma=0.9, counterfactual="all", mode="dual", num_messages=3)
    second = ObedienceConstraintLoss(scheme, receiver, critic, gamma=0.9, counterfactual="all", mode="dual", num_messages=3)
    with torch.no_grad():
        out_first = first(batch)
        only_param(receiver).data.add_(1.0)  # no version bump
        only_param(scheme).data.mul_(-1.0)
        out_second = second(batch)
        fresh = copy_loss(second)(batch)
    assert not torch.equal(out_first["loss_critic"], out_second["loss_critic"])
    for key in ("loss_critic", "loss_obedience", "constraint"):
        torch.testing.assert_close(out_second[key], fresh[key], rtol=0, atol=0)
    # forward changes no buffer; one instance's explicit update leaves the other's multipliers alone
    state = {k: v.clone() for k, v in first.state_dict().items()}
    first(batch)
    assert all(torch.equal(v, first.state_dict()[k]) for k, v in state.items())
    first.update_multipliers(out_first)
    assert not torch.equal(first.lagrange_multiplier, second.lagrange_multiplier)


def copy_loss(loss):
    import copy

    return copy.deepcopy(loss)


def _outputs(loss, batch):
    torch.manual_seed(0)
    return loss(batch)


@pytest.mark.parametrize(
    "loss_cls, kwargs",
    [
        (SignalingGradientLoss, dict(gamma=0.9)),
        (SignalingGradientLoss, dict(gamma=0.0, entropy_coeff=0.1)),
        (ObedienceConstraintLoss, dict(gamma=0.9)),
        (ObedienceConstraintLoss, dict(gamma=0.0, mode="dual", counterfactual="all")),
    ],
    ids=["sg", "sg_one_step_entropy", "oc", "oc_one_step_dual"],
)
def test_in_keys_and_out_keys(loss_cls, kwargs):
    loss, scheme, receiver, _ = _sender_loss(loss_cls, **kwargs)
    batch = half_terminated(collect(recommendation_letter(num_envs=32, num_messages=3, seed=0), scheme, receiver))
    out = _outputs(loss, batch)
    assert sorted(loss.out_keys) == sorted(out.keys())
    in_keys = loss.in_keys
    assert len(in_keys) == len(set(in_keys)) and all(k in batch.keys(True, True) for k in in_keys)
    # the keys suffice: the same numbers from the batch reduced to them ...
    selected = _outputs(loss, batch.select(*in_keys))
    for key in out.keys():
        torch.testing.assert_close(selected[key], out[key], rtol=0, atol=0)
    # ... and each is needed ("done" is only read by a value estimator)
    for key in in_keys:
        with pytest.raises(KeyError):
            loss(batch.select(*in_keys).exclude(key))
    loss.make_value_estimator(ValueEstimators.TDLambda)
    assert ("next", "done") in loss.in_keys


# ------------------------------------------------------------------------------------------ value estimators

# One hand-made trajectory of 5 steps (time last) through the two Recommendation-Letter states: step 1 is
# truncated (done, not terminated: bootstrap, and the lambda-return restarts), step 3 terminates, step 4 is the
# last of the batch (bootstrap).
TRAJ_STATE = [0, 1, 1, 0, 1]
TRAJ_NEXT = [1, 1, 0, 1, 0]
TRAJ_REWARD = [1.0, -0.5, 2.0, 0.3, 0.7]
TRAJ_DONE = [False, True, False, True, False]
TRAJ_TERMINATED = [False, False, False, True, False]
TRAJ_ACTION = [1, 0, 1, 1, 0]
TRAJ_MESSAGE = [2, 0, 1, 2, 1]


def _trajectory(reward_key) -> TensorDict:
    def one_hot(idx, n):
        return torch.eye(n)[torch.tensor(idx)].unsqueeze(0)

    def flag(values):
        return torch.tensor(values).view(1, 5, 1)

    return TensorDict(
        {
            ("sender", "observation"): one_hot(TRAJ_STATE, 2),
            ("receiver", "observation"): torch.zeros(1, 5, 0),
            ("sender", "message"): one_hot(TRAJ_MESSAGE, 3),
            ("sender", "gumbel"): torch.zeros(1, 5, 3),
            ("receiver", "action"): one_hot(TRAJ_ACTION, 2),
            ("next", "sender", "observation"): one_hot(TRAJ_NEXT, 2),
            ("next", "receiver", "observation"): torch.zeros(1, 5, 0),
            ("next", *reward_key): torch.tensor(TRAJ_REWARD).view(1, 5, 1),
            ("next", "done"): flag(TRAJ_DONE),
            ("next", "terminated"): flag(TRAJ_TERMINATED),
            ("next", "truncated"): flag([d and not t for d, t in zip(TRAJ_DONE, TRAJ_TERMINATED)]),
        },
        batch_size=[1, 5],
    )


def _hand_targets(v_next: list[float], gamma: float, lmbda: float) -> list[float]:
    """The lambda-return by its recursion, from the last step back (lmbda=0: TD(0), lmbda=1: TD(1))."""
    out = [0.0] * 5
    for t in reversed(range(5)):
        alive = 0.0 if TRAJ_TERMINATED[t] else 1.0
        following = v_next[t] if (TRAJ_DONE[t] or t == 4) else out[t + 1]
        out[t] = TRAJ_REWARD[t] + gamma * alive * ((1 - lmbda) * v_next[t] + lmbda * following)
    return out


@pytest.mark.parametrize("loss_cls", [SignalingGradientLoss, ObedienceConstraintLoss], ids=lambda c: c.__name__)
@pytest.mark.parametrize(
    "estimator, kwargs, lmbda",
    [
        (None, {}, 0.0),
        (ValueEstimators.TD0, {}, 0.0),
        (ValueEstimators.TD1, {}, 1.0),
        (ValueEstimators.TDLambda, {"lmbda": 0.6}, 0.6),
        (ValueEstimators.TDLambda, {"lmbda": 0.6, "gamma": 0.5}, 0.6),
    ],
    ids=["default", "td0", "td1", "tdlambda", "tdlambda_own_gamma"],
)
def test_value_estimators_give_the_hand_computed_target(loss_cls, estimator, kwargs, lmbda):
    sg = loss_cls is SignalingGradientLoss
    w_key = ("sender", "action_value") if sg else W_RECEIVER_KEY
    w_table = torch.tensor([[0.4, -1.0], [1.5, 0.2]], dtype=F64)
    scheme, receiver, critic = tabular_modules(PHI3, PI3, w_table, w_key=w_key)
    loss = loss_cls(scheme, receiver, critic, gamma=0.8, num_messages=3)
    if estimator is not None:
        loss.make_value_estimator(estimator, **kwargs)
        assert loss.value_type is estimator
    gamma = kwargs.get("gamma", 0.8)
    with torch.no_grad():  # a target critic that differs from the online one
        for t in loss.target_critic_network_params.values(True, True):
            t.mul_(0.5)
    w = only_param(critic).detach().T.to(F64)  # float32-rounded, like the net's
    v = (PHI3 @ PI3 * (0.5 * w)).sum(-1)  # V(s) = sum_sigma phi sum_a pi W_target, by state
    targets = _hand_targets([v[s].item() for s in TRAJ_NEXT], gamma, lmbda)
    batch = _trajectory(("sender", "reward") if sg else ("receiver", "reward"))
    if estimator is not None:
        got = loss.value_estimator.value_estimate(batch.clone()).squeeze(-1).squeeze(0).to(F64)
        torch.testing.assert_close(got, torch.tensor(targets, dtype=F64), rtol=1e-5, atol=1e-6)
    w_taken = torch.stack([w[s, a] for s, a in zip(TRAJ_STATE, TRAJ_ACTION)])
    expected = (w_taken - torch.tensor(targets, dtype=F64)).pow(2).mean()
    torch.testing.assert_close(loss(batch)["loss_critic"].to(F64), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("loss_cls", [SignalingGradientLoss, ObedienceConstraintLoss], ids=lambda c: c.__name__)
def test_td0_estimator_matches_the_default_target(loss_cls):
    loss, scheme, receiver, _ = _sender_loss(loss_cls, gamma=0.9)
    batch = half_terminated(collect(recommendation_letter(num_envs=64, num_messages=3, seed=0), scheme, receiver))
    default = _outputs(loss, batch)
    assert loss.value_type is ValueEstimators.TD0  # the default: computed in place, no estimator built
    loss.make_value_estimator(ValueEstimators.TD0)
    torch.testing.assert_close(_outputs(loss, batch)["loss_critic"], default["loss_critic"])


@pytest.mark.parametrize("loss_cls", [SignalingGradientLoss, ObedienceConstraintLoss], ids=lambda c: c.__name__)
@pytest.mark.parametrize("value_type", [ValueEstimators.GAE, ValueEstimators.VTrace, ValueEstimators.MAGAE])
def test_state_value_estimators_are_refused_by_name(loss_cls, value_type):
    loss, *_ = _sender_loss(loss_cls)
    with pytest.raises(NotImplementedError, match=r"ValueEstimators\.TD0, ValueEstimators\.TD1, ValueEstimators\.TDLambda"):
        loss.make_value_estimator(value_type)


def test_value_estimator_follows_set_keys_and_soft_update():
    scheme, receiver, critic = renamed_modules(3)
    loss = SignalingGradientLoss(scheme, receiver, critic, gamma=0.9)
    loss.make_value_estimator(ValueEstimators.TDLambda, lmbda=0.9)
    loss.set_keys(logits=("prof", "logits"), message=("prof", "letter"), gumbel=("prof", "noise"),
                  action=("hr", "decision"), reward=("prof", "payoff"), action_value=("prof", "w"),
                  value=("prof", "v"), done="finished", terminated="ended")
    keys = loss.value_estimator.tensor_keys
    assert (keys.value, keys.reward, keys.done, keys.terminated) == (("prof", "v"), ("prof", "payoff"), "finished", "ended")
    default_batch = half_terminated(collect(recommendation_letter(num_envs=16, num_messages=3, seed=0), *default_modules(3)[:2]))
    batch = rename(default_batch, RENAMED).reshape(4, 4)  # [B, T]
    loss(batch)  # runs on the renamed keys
    before = loss.value_estimator.value_estimate(batch.clone())
    with torch.no_grad():
        for p in loss.critic_network_params.values(True, True):
            p.add_(1.0)
    # the estimator bootstraps from the target critic: unchanged by the online step, moved by SoftUpdate
    assert torch.equal(loss.value_estimator.value_estimate(batch.clone()), before)
    SoftUpdate(loss, tau=0.5).step()
    assert not torch.allclose(loss.value_estimator.value_estimate(batch.clone()), before)


# ------------------------------------------------------------------------------------------ torch.compile


@pytest.mark.parametrize(
    "loss_cls, kwargs",
    [
        (SignalingGradientLoss, dict(gamma=0.9, entropy_coeff=0.1)),
        (ObedienceConstraintLoss, dict(gamma=0.9, mode="dual", counterfactual="all")),
    ],
    ids=["sg", "oc_dual_all"],  # (tracing takes seconds; the default "uniform" path also traced clean by hand)
)
def test_forward_has_no_graph_break(loss_cls, kwargs):
    import torch._dynamo

    if not torch._dynamo.is_dynamo_supported():
        pytest.skip("torch._dynamo does not run on this Python / platform")
    loss, scheme, receiver, _ = _sender_loss(loss_cls, **kwargs)
    batch = half_terminated(collect(recommendation_letter(num_envs=16, num_messages=3, seed=0), scheme, receiver))
    torch._dynamo.reset()
    explained = torch._dynamo.explain(loss)(batch)
    reasons = [b.reason.splitlines()[0] for b in explained.break_reasons]
    assert explained.graph_break_count == 0 and explained.graph_count == 1, reasons


def test_trainer_steps_the_dual_multipliers_after_the_loss(recipe_config, tmp_path):
    """The recipes' loop calls update_multipliers once per sender update, with that update's estimates."""
    from msgzoo.runtime.experiment import Experiment
    from recipes import build_method
    from msgzoo.pipelines import one_step
    from msgzoo.training.trainer import Trainer

    cfg = recipe_config("sgoc_recommendation_letter", "env.num_envs=64", "loss.obedience_mode=dual",
                        "loss.epsilon=1.0")
    env = one_step.make_env(cfg)
    method = build_method("sgoc", env, cfg)
    exp = Experiment(method="sgoc", task="t", seed=0, config={}, backends=("csv",), run_dir=tmp_path / "run")
    trainer = Trainer(env, method, exp, total_frames=64, frames_per_batch=64)
    oc = method.sender_losses["obedience"]
    batch = collect(env, method.scheme, method.receiver)
    before = oc.lagrange_multiplier.clone()
    torch.manual_seed(0)
    expected = oc(batch)["constraint_estimates"]  # the same draw as the trainer's forward below
    metrics: dict = {}
    torch.manual_seed(0)
    trainer.update_phase(method.phases[1], batch, metrics)  # the sender's phase
    torch.testing.assert_close(oc.lagrange_multiplier, (before - cfg.loss.dual_lr * (expected - 1.0)).clamp_min(0.0))
    assert metrics["obedience/lagrange_multiplier"] == before.mean()  # the loss read the pre-step multipliers
    assert "obedience/constraint_estimates" not in metrics  # not a scalar: not logged
    exp.close()


def test_dual_pairwise_multipliers_step_explicitly():
    scheme, receiver, critic = default_modules(3, w_key=W_RECEIVER_KEY)
    batch = collect(recommendation_letter(num_envs=64, num_messages=3, seed=0), scheme, receiver)
    loss = ObedienceConstraintLoss(scheme, receiver, critic, mode="dual_pairwise", counterfactual="all",
                                   num_messages=3, lagrange_multiplier=1.0, dual_lr=0.1, epsilon=1.0, gamma=0.0)
    out = loss(batch)
    assert torch.equal(loss.lagrange_multiplier, torch.ones(6))  # forward leaves them alone
    pairs = loss.constraint_matrix(batch).detach()[~torch.eye(3, dtype=torch.bool)]
    torch.testing.assert_close(out["constraint_estimates"], pairs)  # one estimate per ordered pair, row-major
    loss.update_multipliers(out)
    torch.testing.assert_close(loss.lagrange_multiplier, (1.0 - 0.1 * (pairs - 1.0)).clamp_min(0.0))
    assert sorted(loss.out_keys) == sorted(out.keys())
