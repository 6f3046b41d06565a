"""The speed paths give the results of the plain paths: all-messages forward, no-grad memo, fused collection policy."""
from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from torchrl.envs.utils import ExplorationType, set_exploration_type

from msgzoo.envs import ReachingGoalsEnv
from msgzoo.modules import (
    GridNet,
    ObservationMessageNet,
    VectorNet,
    make_action_value_critic,
    make_receiver_actor,
    make_signaling_scheme,
)
from msgzoo.modules.fast import FusedSchemeReceiverPolicy, fuse_policy
from msgzoo.objectives import SignalingGradientLoss, common



def _expanded(receiver, td, num_messages):
    """The plain path: the receiver called on the batch expanded over every one-hot message."""
    inputs = td.select(*receiver.in_keys, strict=False).exclude(("sender", "message"))
    batch = inputs.batch_size
    expanded = inputs.unsqueeze(-1).expand(*batch, num_messages).copy()
    expanded.set(("sender", "message"), torch.eye(num_messages).expand(*batch, num_messages, num_messages))
    return receiver.get_dist(expanded).probs


@pytest.mark.parametrize("channels", [0, 1, 2])
def test_all_messages_grid_equals_expanded(channels):
    torch.manual_seed(0)
    receiver = make_receiver_actor(ObservationMessageNet(GridNet(channels + 1, 3, 4, 4), grid_shape=(3, 4)))
    td = TensorDict({("receiver", "observation"): torch.rand(5, 2, channels, 3, 4),
                     ("sender", "message"): torch.zeros(5, 2, 12)}, [5, 2])
    fast = common.receiver_probs_all_messages(receiver, td, ("sender", "message"), 12)
    assert fast.shape == (5, 2, 12, 4)
    torch.testing.assert_close(fast, _expanded(receiver, td, 12))


def test_all_messages_vector_equals_expanded():
    torch.manual_seed(0)
    receiver = make_receiver_actor(ObservationMessageNet(VectorNet(3 + 2, 2, hidden=(8,))))
    td = TensorDict({("receiver", "observation"): torch.rand(7, 3), ("sender", "message"): torch.zeros(7, 2)}, [7])
    torch.testing.assert_close(common.receiver_probs_all_messages(receiver, td, ("sender", "message"), 2),
                               _expanded(receiver, td, 2))


def test_all_messages_table_follows_parameter_and_input_changes():
    """No result is kept between calls (no memo): the table always reflects the current parameters and inputs."""
    torch.manual_seed(0)
    receiver = make_receiver_actor(ObservationMessageNet(GridNet(2, 3, 3, 4), grid_shape=(3, 3)))
    obs = torch.rand(6, 1, 3, 3)
    td = TensorDict({("receiver", "observation"): obs, ("sender", "message"): torch.zeros(6, 9)}, [6])
    with torch.no_grad():
        first = common.receiver_probs_all_messages(receiver, td, ("sender", "message"), 9)
        next(receiver.parameters()).add_(0.5)  # an in-place update, as an optimizer step
        after_step = common.receiver_probs_all_messages(receiver, td, ("sender", "message"), 9)
        assert not torch.allclose(after_step, first)
        torch.testing.assert_close(after_step, _expanded(receiver, td, 9))
        obs.mul_(0.0)  # an in-place change of the input
        torch.testing.assert_close(common.receiver_probs_all_messages(receiver, td, ("sender", "message"), 9),
                                   _expanded(receiver, td, 9))
    # with autograd on, the result carries gradients
    assert common.receiver_probs_all_messages(receiver, td, ("sender", "message"), 9).requires_grad


def _policy(env):
    scheme = make_signaling_scheme(GridNet(3, 3, 3, 9))
    receiver = make_receiver_actor(ObservationMessageNet(GridNet(2, 3, 3, 4), grid_shape=(3, 3)))
    from tensordict.nn import TensorDictSequential

    return TensorDictSequential(scheme, receiver)


@pytest.mark.parametrize("kind", [ExplorationType.RANDOM, ExplorationType.DETERMINISTIC, None])
def test_fused_policy_equals_sequence(kind):
    torch.manual_seed(0)
    env = ReachingGoalsEnv(num_envs=16, seed=0)
    policy = _policy(env)
    fused = fuse_policy(policy)
    assert isinstance(fused, FusedSchemeReceiverPolicy)
    td = env.reset()
    outs = []
    for module in (policy, fused):
        torch.manual_seed(1)
        if kind is None:
            outs.append(module(td.clone()))
        else:
            with set_exploration_type(kind):
                outs.append(module(td.clone()))
    a, b = outs
    assert set(a.keys(True, True)) == set(b.keys(True, True))
    for key in a.keys(True, True):
        torch.testing.assert_close(a.get(key), b.get(key), rtol=0, atol=0)


def test_fuse_policy_declines_other_policies():
    env = ReachingGoalsEnv(num_envs=4, seed=0)
    policy = _policy(env)
    assert fuse_policy(policy.module[0]) is None  # the scheme alone
    from tensordict.nn import TensorDictSequential

    assert fuse_policy(TensorDictSequential(*policy.module, policy.module[1])) is None


def test_signaling_entropy_bonus_is_optional():
    torch.manual_seed(0)
    env = ReachingGoalsEnv(num_envs=8, seed=0)
    policy = _policy(env)
    scheme, receiver = policy.module
    td = env.step(policy(env.reset()))
    plain = SignalingGradientLoss(scheme, receiver, make_action_value_critic(GridNet(3, 3, 3, 4)))(td)
    assert "loss_entropy" not in plain.keys()
    bonus = SignalingGradientLoss(scheme, receiver, make_action_value_critic(GridNet(3, 3, 3, 4)),
                                  entropy_coeff=0.5)(td)
    assert float(bonus["loss_entropy"]) == pytest.approx(-0.5 * float(bonus["entropy"]))
    assert 0.0 < float(bonus["entropy"]) <= float(torch.log(torch.tensor(9.0))) + 1e-5
    with pytest.raises(ValueError, match="entropy_coeff"):
        SignalingGradientLoss(scheme, receiver, make_action_value_critic(GridNet(3, 3, 3, 4)), entropy_coeff=-1.0)


def _sgoc_losses(share: bool):
    """SG and obedience losses on one scheme and receiver (fresh networks from seed 0), optionally sharing a memo."""
    from msgzoo.objectives import ObedienceConstraintLoss

    torch.manual_seed(0)
    scheme, receiver = _policy(None).module
    sg = SignalingGradientLoss(scheme, receiver, make_action_value_critic(GridNet(3, 3, 3, 4)))
    oc = ObedienceConstraintLoss(scheme, receiver, make_action_value_critic(
        GridNet(3, 3, 3, 4), out_key=("sender", "receiver_action_value")), num_messages=9, counterfactual="all")
    if share:
        oc.share_memo(sg)
    return scheme, receiver, sg, oc


def test_shared_memo_computes_all_messages_once_with_the_same_numbers():
    """Sharing the no-grad results of the SG and obedience losses: the receiver's all-message forward runs twice per
    update (batch and next states) instead of four times, and losses and gradients are bitwise those without."""
    results = []
    for share in (False, True):
        scheme, receiver, sg, oc = _sgoc_losses(share)
        env = ReachingGoalsEnv(num_envs=16, seed=0)
        torch.manual_seed(1)
        td = env.step(receiver(scheme(env.reset())))
        net = receiver.module[0].module
        calls = []
        original = net.forward_all_messages
        net.forward_all_messages = lambda *a, **k: calls.append(1) or original(*a, **k)
        out_sg, out_oc = sg(td), oc(td)
        (out_sg["loss_signaling"] + out_sg["loss_critic"] + out_oc["loss_obedience"] + out_oc["loss_critic"]).backward()
        grads = [p.grad.clone() for p in (*scheme.parameters(), *sg.critic_network.parameters(),
                                          *oc.critic_network.parameters())]
        results.append((len(calls), out_sg, out_oc, grads))
    (calls_plain, *plain), (calls_shared, *shared) = results
    assert (calls_plain, calls_shared) == (4, 2)
    for a, b in zip(plain[:2], shared[:2]):
        for key in a.keys():
            assert torch.equal(a[key], b[key]), key
    assert all(torch.equal(g, h) for g, h in zip(plain[2], shared[2]))


def test_memo_serves_only_unchanged_inputs_and_parameters():
    memo = common.NoGradMemo()
    net = torch.nn.Linear(3, 2)
    x = torch.rand(4, 3)
    computed = []

    def call(inputs):
        return memo("f", inputs, [net], lambda: computed.append(1) or net(inputs[0]))

    with torch.no_grad():
        first = call([x])
        assert call([x]) is first and len(computed) == 1  # a hit
        assert torch.equal(call([x.clone()]), first) and len(computed) == 2  # another tensor: recomputed
        net.weight.add_(0.5)  # an optimizer-like in-place step
        assert not torch.equal(call([x]), first) and len(computed) == 3
        x.mul_(2.0)  # an in-place change of the input
        assert torch.equal(call([x]), net(x)) and len(computed) == 4
    out = call([x])  # autograd on: computed afresh, with its graph, never cached
    assert out.requires_grad and len(computed) == 5


@pytest.mark.parametrize("shape", [(4, 3, 3), (3, 5, 5), (2, 3, 4)])
def test_conv_matrix_is_the_convolution_of_the_basis_images_bit_for_bit(shape):
    """The gathered dense convolution equals ``conv2d`` of the basis images exactly, values and weight gradients."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    c, h, w = shape
    net = GridNet(c, h, w, 4)
    basis = torch.eye(c * h * w).view(-1, c, h, w)
    plain = F.conv2d(basis, net.conv.weight, None, padding=net.conv.padding).flatten(1)
    gathered = net.conv_matrix()
    assert torch.equal(plain, gathered)
    g = torch.randn_like(plain)
    (grad_plain,) = torch.autograd.grad(plain, net.conv.weight, g)
    (grad_gathered,) = torch.autograd.grad(gathered, net.conv.weight, g)
    assert torch.equal(grad_plain, grad_gathered)


def test_receiver_log_prob_equals_the_distribution_bit_for_bit():
    """The direct log-prob of a one-hot categorical receiver: the values and input gradients of ``get_dist``."""
    torch.manual_seed(0)
    receiver = make_receiver_actor(ObservationMessageNet(GridNet(2, 3, 3, 4), grid_shape=(3, 3)))
    obs = torch.rand(6, 1, 3, 3)
    action = torch.eye(4)[torch.randint(4, (6,))]
    soft_message = torch.rand(6, 9)
    results = []
    for direct in (False, True):
        message = soft_message.clone().requires_grad_()
        td = TensorDict({("receiver", "observation"): obs, ("sender", "message"): message}, [6])
        log_pi = (common.receiver_log_prob(receiver, td, action) if direct
                  else common.receiver_dist(receiver, td).log_prob(action))
        (grad,) = torch.autograd.grad(log_pi.sum(), message)
        results.append((log_pi.detach(), grad))
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])


def test_module_output_only_takes_plain_modules():
    from tensordict.nn import TensorDictModule, TensorDictSequential

    net = torch.nn.Linear(3, 2)
    td = TensorDict({"x": torch.rand(5, 3)}, [5])
    plain = TensorDictModule(net, in_keys=["x"], out_keys=["y"])
    assert torch.equal(common.module_output(plain, td, "y"), net(td["x"]))
    assert common.module_output(plain, td, "z") is None  # another key: the caller's usual path (and its error)
    assert common.module_output(TensorDictSequential(plain), td, "y") is None


def test_online_params_skip_only_the_modules_own_parameters():
    import contextlib

    torch.manual_seed(0)
    scheme, receiver = _policy(None).module
    loss = SignalingGradientLoss(scheme, receiver, make_action_value_critic(GridNet(3, 3, 3, 4)))
    critic = loss.critic_network
    assert isinstance(common.online_params(loss.critic_network_params, critic), contextlib.nullcontext)
    target = loss.target_critic_network_params
    x = torch.rand(5, 3, 3, 3)
    with common.online_params(target, critic):  # another set of values: put in place for the call
        out = critic.module(x)
    with target.to_module(critic, preserve_module_state=False):
        assert torch.equal(out, critic.module(x))


def test_memo_caches_nothing_off_the_cpu():
    """Off the CPU the memo would need host syncs to compare values: it computes every time (meta tensors here)."""
    memo = common.NoGradMemo()
    net = torch.nn.Linear(3, 2, device="meta")
    x = torch.empty(4, 3, device="meta")
    computed = []
    with torch.no_grad():
        for _ in range(2):
            memo("f", [x], [net], lambda: computed.append(1) or net(x))
    assert len(computed) == 2
