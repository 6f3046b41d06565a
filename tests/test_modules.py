"""TensorDict modules: Gumbel noise and straight-through messages, the scheme, the receiver, encoders, DIAL's DRU."""
from __future__ import annotations

import math

import pytest
import torch
from tensordict import TensorDict
from torchrl.envs.utils import ExplorationType, set_exploration_type

import msgzoo.modules.gumbel as gumbel_module
from msgzoo.modules import (
    GridNet,
    GumbelMessageSampler,
    ObservationMessageNet,
    VectorNet,
    make_action_value_critic,
    make_receiver_actor,
    make_signaling_scheme,
    make_value_critic,
    sample_gumbel,
    scheme_as_actor,
    straight_through_one_hot,
)
from msgzoo.modules.dial import DiscretiseRegulariseUnit, make_dial_receiver, make_dial_sender
from msgzoo.modules.small_softmax import softmax

EULER_GAMMA = 0.5772156649015329



# ------------------------------------------------------------------------------------------ sample_gumbel


@pytest.mark.parametrize(
    "u_value",
    [0.0, 1.0 - 2.0**-24, 1.0],  # exact zero, the largest float32 below 1, and 1 itself
    ids=["zero", "one_minus_ulp", "one"],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
def test_sample_gumbel_finite_at_the_edges_of_rand(monkeypatch, u_value, dtype):
    def fake_rand(shape, *, device=None, dtype=torch.float32, generator=None):
        return torch.full(tuple(shape), u_value, dtype=dtype, device=device)

    monkeypatch.setattr(gumbel_module.torch, "rand", fake_rand)
    g = sample_gumbel(torch.Size([5, 3]), dtype=dtype)
    assert g.shape == (5, 3) and g.dtype == dtype
    assert torch.isfinite(g).all(), f"u={u_value} gave {g.flatten()[0].item()}"


def test_sample_gumbel_distribution():
    torch.manual_seed(0)
    n = 200_000
    g = sample_gumbel(torch.Size([n])).double()
    # standard Gumbel: mean = Euler-Mascheroni, variance = pi^2 / 6
    var = math.pi**2 / 6
    assert abs(g.mean().item() - EULER_GAMMA) < 5 * math.sqrt(var / n)
    # sd of the sample variance ~ sigma^2 sqrt((2 + excess kurtosis 12/5) / n)
    assert abs(g.var().item() - var) < 5 * var * math.sqrt(4.4 / n)
    # CDF exp(-exp(-x)) at a few points
    for x in (-1.0, 0.0, 1.0, 3.0):
        p = math.exp(-math.exp(-x))
        assert abs((g <= x).double().mean().item() - p) < 5 * math.sqrt(p * (1 - p) / n)


def test_sample_gumbel_generator_is_used():
    a = sample_gumbel(torch.Size([4]), generator=torch.Generator().manual_seed(3))
    b = sample_gumbel(torch.Size([4]), generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


# ------------------------------------------------------------------------------------ GumbelMessageSampler


def _logits_td(logits: torch.Tensor) -> TensorDict:
    return TensorDict({("sender", "logits"): logits}, batch_size=logits.shape[:-1])


def test_gumbel_sampler_one_hot_and_argmax_of_stored_noise():
    torch.manual_seed(0)
    logits = torch.randn(64, 5) * 3
    with set_exploration_type(ExplorationType.RANDOM):
        td = GumbelMessageSampler()(_logits_td(logits))
    message, gumbel = td["sender", "message"], td["sender", "gumbel"]
    assert message.shape == (64, 5) and message.dtype == logits.dtype
    assert ((message == 0) | (message == 1)).all() and (message.sum(-1) == 1).all()
    assert gumbel.shape == logits.shape and torch.isfinite(gumbel).all() and (gumbel != 0).any()
    expected = torch.nn.functional.one_hot((logits + gumbel).argmax(-1), 5).to(logits.dtype)
    assert torch.equal(message, expected)


def test_gumbel_sampler_without_exploration_context_samples():
    """Outside any ``set_exploration_type`` (``exploration_type() is None``) the sampler samples."""
    torch.manual_seed(1)
    logits = torch.zeros(200, 4)
    td = GumbelMessageSampler()(_logits_td(logits))
    assert (td["sender", "gumbel"] != 0).all()
    assert td["sender", "message"].sum(0).gt(0).all()  # all four messages appear


def test_gumbel_sampler_frequencies_match_softmax():
    torch.manual_seed(0)
    n = 100_000
    base = torch.tensor([1.0, 0.0, -1.0, 2.0, 0.5])
    with set_exploration_type(ExplorationType.RANDOM):
        td = GumbelMessageSampler()(_logits_td(base.expand(n, 5).clone()))
    counts = td["sender", "message"].sum(0).double()
    expected = torch.softmax(base.double(), -1) * n
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert chi2 < 25.0, f"chi-square {chi2:.1f} with 4 degrees of freedom"  # p < 1e-4 under H0


@pytest.mark.parametrize("etype", [ExplorationType.DETERMINISTIC, ExplorationType.MODE])
def test_gumbel_sampler_deterministic(etype):
    torch.manual_seed(0)
    logits = torch.randn(32, 6)
    with set_exploration_type(etype):
        td = GumbelMessageSampler()(_logits_td(logits))
    assert torch.equal(td["sender", "message"], torch.nn.functional.one_hot(logits.argmax(-1), 6).float())
    assert torch.equal(td["sender", "gumbel"], torch.zeros_like(logits))


def test_gumbel_sampler_custom_keys():
    sampler = GumbelMessageSampler(logits_key=("a", "l"), message_key="msg", gumbel_key=("b", "g"))
    assert sampler.in_keys == [("a", "l")] and sampler.out_keys == ["msg", ("b", "g")]
    td = sampler(TensorDict({("a", "l"): torch.randn(3, 2)}, batch_size=[3]))
    assert td["msg"].shape == (3, 2) and td["b", "g"].shape == (3, 2)


# ------------------------------------------------------------------------------- straight_through_one_hot


@pytest.mark.parametrize("scale", [1.0, 50.0, 1e4, 1e6])
@pytest.mark.parametrize("temperature", [1.0, 0.1, 3.0])
def test_straight_through_value_is_exactly_hard(scale, temperature):
    torch.manual_seed(0)
    logits = torch.randn(256, 7) * scale
    g = sample_gumbel(logits.shape)
    out = straight_through_one_hot(logits, g, temperature)
    hard = torch.nn.functional.one_hot((logits + g).argmax(-1), 7).float()
    assert torch.equal(out, hard)


def test_straight_through_gradient_is_the_soft_samples():
    torch.manual_seed(0)
    for temperature in (1.0, 0.5, 2.0):
        logits = torch.randn(32, 5, requires_grad=True)
        g = sample_gumbel(logits.shape)
        v = torch.randn(32, 5)
        (straight_through_one_hot(logits, g, temperature) * v).sum().backward()
        grad_st = logits.grad.clone()
        logits.grad = None
        # the soft sample as the module computes it (msgzoo's softmax: torch's to a few ulps, test_small_softmax.py)
        (softmax((logits + g) / temperature) * v).sum().backward()
        torch.testing.assert_close(grad_st, logits.grad, rtol=1e-6, atol=1e-7)
        assert grad_st.abs().sum() > 0


def test_straight_through_hard_argument_is_respected():
    torch.manual_seed(0)
    logits = torch.randn(16, 4, requires_grad=True)
    g = sample_gumbel(logits.shape)
    # a message that is NOT argmax(logits + g): the value must still be exactly that message
    hard = torch.nn.functional.one_hot(((logits + g).argmax(-1) + 1) % 4, 4).float()
    out = straight_through_one_hot(logits, g, hard=hard)
    assert torch.equal(out, hard)
    v = torch.randn(16, 4)
    (out * v).sum().backward()
    grad = logits.grad.clone()
    logits.grad = None
    (torch.softmax(logits + g, -1) * v).sum().backward()
    torch.testing.assert_close(grad, logits.grad)


# ------------------------------------------------------------------------------- scheme, actor, receiver


def test_scheme_and_scheme_as_actor_share_parameters():
    torch.manual_seed(0)
    scheme = make_signaling_scheme(VectorNet(3, 4, hidden=(8,)))
    actor = scheme_as_actor(scheme)
    assert {id(p) for p in actor.parameters()} == {id(p) for p in scheme.parameters()}
    assert len(list(scheme.parameters())) == 4
    assert scheme.message_key == ("sender", "message") and scheme.logits_key == ("sender", "logits")

    obs = torch.eye(3)[torch.randint(3, (10,))]
    td = TensorDict({("sender", "observation"): obs}, batch_size=[10])
    with set_exploration_type(ExplorationType.RANDOM):
        out = actor(td.clone())
    message = out["sender", "message"]
    assert message.shape == (10, 4) and (message.sum(-1) == 1).all()
    logits = scheme.logits_module(td.clone())["sender", "logits"]
    expected_lp = (torch.log_softmax(logits, -1) * message).sum(-1)
    torch.testing.assert_close(out["sender", "message_log_prob"], expected_lp)

    # changing a parameter of the scheme changes the actor's logits: same tensors, not copies
    with torch.no_grad():
        next(scheme.parameters()).add_(1.0)
    torch.testing.assert_close(actor(td.clone())["sender", "logits"], scheme.logits_module(td.clone())["sender", "logits"])


def test_scheme_writes_logits_message_and_noise_on_custom_keys():
    scheme = make_signaling_scheme(
        VectorNet(2, 3), in_keys=[("prof", "obs")], logits_key=("prof", "l"),
        message_key=("prof", "letter"), gumbel_key=("prof", "g"),
    )
    td = TensorDict({("prof", "obs"): torch.eye(2)}, batch_size=[2])
    with set_exploration_type(ExplorationType.RANDOM):
        scheme(td)
    assert td["prof", "l"].shape == td["prof", "letter"].shape == td["prof", "g"].shape == (2, 3)
    assert torch.equal(
        td["prof", "letter"], torch.nn.functional.one_hot((td["prof", "l"] + td["prof", "g"]).argmax(-1), 3).float()
    )


def test_receiver_actor_outputs():
    torch.manual_seed(0)
    actor = make_receiver_actor(ObservationMessageNet(VectorNet(3 + 4, 5)))
    td = TensorDict(
        {("receiver", "observation"): torch.randn(8, 3), ("sender", "message"): torch.eye(4)[torch.randint(4, (8,))]},
        batch_size=[8],
    )
    with set_exploration_type(ExplorationType.RANDOM):
        actor(td)
    action, logits, log_prob = td["receiver", "action"], td["receiver", "logits"], td["receiver", "action_log_prob"]
    assert action.shape == (8, 5) and logits.shape == (8, 5) and log_prob.shape == (8,)
    assert (action.sum(-1) == 1).all()
    torch.testing.assert_close(log_prob, (torch.log_softmax(logits, -1) * action).sum(-1))
    assert set(actor.in_keys) == {("receiver", "observation"), ("sender", "message")}


def test_receiver_actor_reads_the_message():
    torch.manual_seed(0)
    actor = make_receiver_actor(ObservationMessageNet(VectorNet(2, 2, bias=False)))
    td = TensorDict(
        {("receiver", "observation"): torch.zeros(2, 0), ("sender", "message"): torch.eye(2)}, batch_size=[2]
    )
    logits = actor(td)["receiver", "logits"]
    w = actor.module[0].module.body.net[0].weight
    torch.testing.assert_close(logits, w.T.detach())  # logits(sigma) = weight[:, sigma]


def test_critic_factories():
    w = make_action_value_critic(VectorNet(2, 3))
    td = TensorDict({("sender", "observation"): torch.eye(2)}, batch_size=[2])
    assert w(td)["sender", "action_value"].shape == (2, 3)
    v = make_value_critic(VectorNet(2, 1), in_keys=[("sender", "observation")], out_key=("sender", "state_value"))
    assert v(td)["sender", "state_value"].shape == (2, 1)


# ------------------------------------------------------------------------------------------------ encoders


def test_gridnet_leading_batch_dims():
    torch.manual_seed(0)
    net = GridNet(2, 4, 5, out_features=3, kernel_size=3, hidden=(8,))
    x = torch.randn(2, 3, 2, 4, 5)
    out = net(x)
    assert out.shape == (2, 3, 3)
    torch.testing.assert_close(out[1, 2], net(x[1, 2]))  # no batch dims: [C, H, W] -> [out]
    torch.testing.assert_close(out.reshape(6, 3), net(x.reshape(6, 2, 4, 5)))
    with pytest.raises(ValueError, match="kernel_size"):
        GridNet(2, 4, 5, 3, kernel_size=4)


def test_observation_message_net_grid_appends_message_channel():
    torch.manual_seed(0)
    seen = {}

    class Body(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = GridNet(3, 3, 4, out_features=2, kernel_size=3, hidden=(8,))

        def forward(self, x):
            seen["x"] = x
            return self.net(x)

    net = ObservationMessageNet(Body(), grid_shape=(3, 4))
    obs = torch.randn(5, 2, 2, 3, 4)  # [N, T, C, H, W]
    cells = torch.randint(12, (5, 2))
    message = torch.nn.functional.one_hot(cells, 12).float()
    out = net(obs, message)
    assert out.shape == (5, 2, 2)
    x = seen["x"]
    assert x.shape == (5, 2, 3, 3, 4)
    assert torch.equal(x[..., :2, :, :], obs)
    assert torch.equal(x[..., 2, :, :], message.reshape(5, 2, 3, 4))
    # the message cell is where the one lies: row-major over (H, W)
    n, t = 3, 1
    r, c = divmod(int(cells[n, t]), 4)
    assert x[n, t, 2, r, c] == 1 and x[n, t, 2].sum() == 1

    other = torch.nn.functional.one_hot((cells + 5) % 12, 12).float()
    assert not torch.allclose(net(obs, other), out)


def test_observation_message_net_vector_concatenates():
    body = VectorNet(5, 2)
    net = ObservationMessageNet(body)
    obs, message = torch.randn(4, 3), torch.eye(2)[[0, 1, 1, 0]]
    torch.testing.assert_close(net(obs, message), body(torch.cat([obs, message], -1)))


# ------------------------------------------------------------------------------------------------- DIAL DRU


def test_dru_training_and_execution():
    torch.manual_seed(0)
    dru = DiscretiseRegulariseUnit(noise_std=0.7)
    logits = torch.randn(4000, 3) * 2
    with set_exploration_type(ExplorationType.RANDOM):
        td = dru(TensorDict({("sender", "message_logits"): logits}, batch_size=[4000]))
    noise = td["sender", "dru_noise"]
    assert torch.equal(td["sender", "message"], torch.sigmoid(logits + noise))
    assert abs(noise.std().item() - 0.7) < 0.03 and abs(noise.mean().item()) < 0.03

    with set_exploration_type(ExplorationType.DETERMINISTIC):
        td = dru(TensorDict({("sender", "message_logits"): logits}, batch_size=[4000]))
    assert torch.equal(td["sender", "message"], (logits > 0).float())
    assert torch.equal(td["sender", "dru_noise"], torch.zeros_like(logits))

    with pytest.raises(ValueError, match="noise_std"):
        DiscretiseRegulariseUnit(noise_std=-0.1)


def test_dial_sender_and_receiver():
    torch.manual_seed(0)
    sender = make_dial_sender(VectorNet(2, 3), noise_std=0.0)
    receiver = make_dial_receiver(ObservationMessageNet(VectorNet(1 + 3, 2)), 2)
    td = TensorDict(
        {("sender", "observation"): torch.eye(2)[[0, 1, 1]], ("receiver", "observation"): torch.randn(3, 1)},
        batch_size=[3],
    )
    with set_exploration_type(ExplorationType.RANDOM):
        receiver(sender(td))
    m = td["sender", "message"]
    assert m.shape == (3, 3) and ((m > 0) & (m < 1)).all()
    torch.testing.assert_close(m, torch.sigmoid(td["sender", "message_logits"]))  # noise_std = 0
    q, a = td["receiver", "action_value"], td["receiver", "action"]
    assert q.shape == (3, 2) and torch.equal(a, torch.nn.functional.one_hot(q.argmax(-1), 2).to(a.dtype))


# ------------------------------------------------------------------ every message at once (the fast path)


def _each_message(net: ObservationMessageNet, observation: torch.Tensor, k: int, event_dims: int) -> torch.Tensor:
    """The reference: the net called once per one-hot message, stacked on dim -2."""
    batch = observation.shape[: observation.ndim - event_dims]
    outs = [net(observation, torch.eye(k)[i].expand(*batch, k)) for i in range(k)]
    return torch.stack(outs, dim=-2)


@pytest.mark.parametrize("obs_features, hidden, bias", [(0, (), False), (3, (), True), (3, (8, 8), True)])
def test_forward_all_messages_vector(obs_features, hidden, bias):
    torch.manual_seed(0)
    k = 4
    net = ObservationMessageNet(VectorNet(obs_features + k, 5, hidden=hidden, bias=bias))
    assert net.supports_all_messages(k)
    obs = torch.randn(6, 2, obs_features)
    out = net.forward_all_messages(obs, k)
    assert out.shape == (6, 2, k, 5)
    torch.testing.assert_close(out, _each_message(net, obs, k, 1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("channels", [0, 2])
def test_forward_all_messages_grid(channels):
    torch.manual_seed(0)
    h, w = 3, 4
    net = ObservationMessageNet(GridNet(channels + 1, h, w, 2, kernel_size=3, hidden=(8,)), grid_shape=(h, w))
    assert net.supports_all_messages(h * w) and not net.supports_all_messages(h * w - 1)
    obs = torch.randn(5, 2, channels, h, w)
    out = net.forward_all_messages(obs, h * w)
    assert out.shape == (5, 2, h * w, 2)
    torch.testing.assert_close(out, _each_message(net, obs, h * w, 3), rtol=1e-5, atol=1e-5)


def test_forward_all_messages_fallback_for_other_bodies():
    torch.manual_seed(0)
    body = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    net = ObservationMessageNet(body)
    assert not net.supports_all_messages(3)
    obs = torch.randn(7, 2)
    torch.testing.assert_close(net.forward_all_messages(obs, 3), _each_message(net, obs, 3, 1))
