"""What the recipes assemble the paper's five methods from, and what the shared code knows of them.

SG = signaling gradient; SGOC = SG + obedience; PG = the sender as an A2C actor over messages;
PGOC = PG + obedience; DIAL = DIAL's differentiable channel. The receiver is trained by A2C in all but
DIAL. Each method is assembled in the open by its recipes (``make_method`` of ``recipes/<method>_<task>.py``:
networks, losses, optimizers, update phases), from the parts here: :class:`Networks` (bodies sized for an env, one
copy per seed), :func:`adam`, the schedules over each seed's env steps (:class:`LinearSchedule`, :class:`RewardMix`
and the ``*_from_config`` readers), the phases' preparations (:func:`prepare_receiver`, :func:`prepare_sender`),
:class:`UpdatePhase` and :class:`Method`, what a training loop needs.

A method declares what the shared code needs to know of it, so that no shared module tests a method's name:
its :class:`MethodSpec` (registered in :data:`METHOD_SPECS`: the typed config of the fields it reads
(``SGOCConfig``, ...), its memory footprint) and, once built, its :class:`Method`: the update phases
(:class:`UpdatePhase`: which losses, which optimizer, what runs before the losses and after the step), the config
fields that set its learning rates and how evaluation reads its policies
(:class:`~msgzoo.training.evaluation.PolicyReadout`). A new method is a recipe per task and one registry entry here.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictSequential
from torch import nn
from torchrl.objectives import LossModule, SoftUpdate

from msgzoo.modules import GridNet, ObservationMessageNet, VectorNet, make_action_value_critic, make_value_critic
from msgzoo.modules.receiver import fit_to_moves_toward_message
from msgzoo.modules.seed_ensemble import SeedEnsemble, seed_members
from msgzoo.objectives import attach_next_message
from msgzoo.objectives.obedience import ALLOWANCES, COUNTERFACTUALS, DUAL_MODES, MARGINS, MODES
from msgzoo.training.config_schema import (
    COEFFICIENT,
    DISCOUNT,
    fail,
    LEARNING_RATE,
    non_negative,
    number,
    one_of,
    positive,
    positive_int,
    probability,
    setting,
)
from msgzoo.objectives.actor_critic import (
    PG_LOOKUPS, RECEIVER_GRADIENTS, AllActionsA2CLoss, make_receiver_a2c_loss,
)
from msgzoo.objectives.signaling_gradient import SENDER_GRADIENTS
from msgzoo.training.evaluation import SCHEME_READOUT, PolicyReadout

RECEIVER_VALUE_KEY = ("receiver", "state_value")
#: Where the critic Q(o, sigma, .) of ``loss.receiver_gradient=all_actions`` (or ``natural``) writes.
RECEIVER_ACTION_VALUE_KEY = ("receiver", "action_value")
#: ``loss.pg_critic``: the PG sender's critic (``value``: TorchRL's A2C with V(s); ``sarsa_q``: the authors' Q(s, sigma)).
PG_CRITICS = ("value", "sarsa_q")
#: What the sender's losses learn from when its objective mixes in the receiver's reward (see :class:`RewardMix`).
SENDER_OBJECTIVE_KEY = ("sender", "objective_reward")


@dataclass(frozen=True)
class LinearSchedule:
    """``start`` until env step ``begin``, moving linearly to ``end`` at ``frames`` (per seed), then ``end``."""

    start: float
    end: float
    frames: int
    begin: int = 0

    def value(self, frames: int) -> float:
        if frames >= self.frames:
            return self.end
        if frames <= self.begin:
            return self.start
        return self.start + (self.end - self.start) * (frames - self.begin) / (self.frames - self.begin)


@dataclass(frozen=True)
class RewardMix:
    """The sender's training reward ``(1 - w) r^i + w r^j``, with ``w`` on a :class:`LinearSchedule`.

    ``w = 0`` is the paper's self-interested sender; ``w: 1 -> 0`` is the *cooperative warm-up*: the sender first
    helps the receiver (a common-interest game, where informative messages pay both, so the receiver learns to read
    them), then turns selfish while the obedience constraints keep its recommendations credible. A constant
    ``w > 0`` is a prosocial sender (``w = 1/2``: half the welfare ``r^i + r^j``).
    """

    weight: LinearSchedule

    def write(self, batch, frames: int, *, sender_reward=("sender", "reward"), receiver_reward=("receiver", "reward")):
        """Writes ``("next", *SENDER_OBJECTIVE_KEY)`` of ``batch`` (in place) for a batch seen after ``frames``."""
        w = self.weight.value(frames)
        nxt = batch.get("next")
        nxt.set(SENDER_OBJECTIVE_KEY, (1.0 - w) * nxt.get(sender_reward) + w * nxt.get(receiver_reward))


def _warmup_frames(cfg) -> int:
    section = cfg.get("warmup")
    return 0 if section is None else int(section.frames)


def prosocial_weight(cfg) -> float:
    """``sender_objective.receiver_weight`` of a recipe's config: the weight w of the receiver's payoff in the sender's
    objective after the warm-up (0 without the section: the paper's selfish sender)."""
    section = cfg.get("sender_objective")
    return 0.0 if section is None else float(section.receiver_weight)


def reward_mix_from_config(cfg) -> RewardMix | None:
    """The sender's objective of a recipe's config: ``warmup.receiver_weight`` moving to
    ``sender_objective.receiver_weight`` over the first ``warmup.frames`` env steps of each seed (None: the paper's
    sender, trained on ``r^i`` itself)."""
    end = prosocial_weight(cfg)
    frames = _warmup_frames(cfg)
    start = float(cfg.warmup.receiver_weight) if frames > 0 else end
    if start == end == 0.0:
        return None
    return RewardMix(LinearSchedule(start, end, max(frames, 1)))


def schedule_over_warmup(cfg, field: str) -> LinearSchedule | None:
    """``warmup.<field>`` moving linearly to ``loss.<field>`` over the warm-up (None: a constant, which the loss is
    built with). For ``joint_epsilon`` and ``receiver_entropy_coeff``."""
    end = float(cfg.loss.get(field, 0.0))
    frames = _warmup_frames(cfg)
    start = float(cfg.warmup.get(field, end)) if frames > 0 else end
    return LinearSchedule(start, end, frames) if start != end else None


def receiver_entropy_from_config(cfg) -> tuple[float, bool, LinearSchedule | None]:
    """The receiver's entropy bonus: its coefficient at the start, whether its loss needs the bonus term at all, and
    its schedule (``warmup.receiver_entropy_coeff`` moving to ``loss.receiver_entropy_coeff`` over the warm-up, which
    :func:`prepare_receiver` applies; None: the constant ``loss.receiver_entropy_coeff``)."""
    schedule = schedule_over_warmup(cfg, "receiver_entropy_coeff")
    if schedule is None:
        constant = float(cfg.loss.receiver_entropy_coeff)
        return constant, constant > 0, None
    return schedule.start, True, schedule


def make_receiver_loss(receiver: nn.Module, nets: "Networks", cfg, *, device="cpu"):
    """The receiver's critic, loss and entropy schedule, as ``loss.receiver_gradient`` asks:

    - ``sampled``: TorchRL's A2C (the paper's receiver, section 4.2): the log-probability of the action taken,
      weighted by its advantage against a critic ``V(o, sigma)``;
    - ``all_actions``: :class:`~msgzoo.objectives.AllActionsA2CLoss`: every action's probability weighted by its
      advantage under a critic ``Q(o, sigma, .)``, the same expected gradient without the action's sampling noise;
    - ``natural``: the same loss with ``natural=True``: each logit moved by its action's advantage.

    The entropy bonus is :func:`receiver_entropy_from_config`'s (its schedule, None for a constant, is returned for
    :func:`prepare_receiver`). Returns ``(critic, loss, entropy_schedule)``.
    """
    L = cfg.loss
    entropy_coeff, entropy_bonus, entropy = receiver_entropy_from_config(cfg)
    in_keys = [("receiver", "observation"), ("sender", "message")]
    gradient = L.get("receiver_gradient", "sampled")
    if gradient in ("all_actions", "natural"):
        critic = make_action_value_critic(nets.receiver(nets.num_actions), in_keys=in_keys,
                                          out_key=RECEIVER_ACTION_VALUE_KEY).to(device)
        loss = AllActionsA2CLoss(receiver, critic, gamma=L.receiver_gamma, entropy_coeff=entropy_coeff,
                                 entropy_bonus=entropy_bonus, natural=gradient == "natural",
                                 ensemble_shape=nets.ensemble_shape)
        return critic, loss, entropy
    critic = make_value_critic(nets.receiver(1), in_keys=in_keys, out_key=RECEIVER_VALUE_KEY).to(device)
    loss = make_receiver_a2c_loss(receiver, critic, gamma=L.receiver_gamma, entropy_coeff=entropy_coeff,
                                  entropy_bonus=entropy_bonus, ensemble_shape=nets.ensemble_shape)
    return critic, loss, entropy


@dataclass
class UpdatePhase:
    """One optimizer step of a method, taken on a collected batch: the losses it sums, the optimizer it steps, and
    what runs around them. The trainer cycles through a method's phases, one phase per collected batch.

    Args:
        name: the key of its optimizer in :attr:`Method.optimizers` (and of its logged loss, if none is named).
        losses: the loss modules whose ``loss_*`` terms are summed, each logged under its key.

    Keyword Args:
        prepare: ``prepare(batch, frames)`` before the losses, with the env steps each seed has taken so far
            (e.g. writing keys the losses read, or stepping a schedule).
        after_loss: ``{loss key: hook(output)}`` called with that loss's output before the step (e.g. dual ascent).
        after_step: called after every optimizer step (e.g. the target networks' soft updates).
        after_batch: ``after_batch(frames)`` once per batch, with the batch's env steps per seed (e.g. an
            exploration schedule over env steps).
    """

    name: str
    losses: dict[str, LossModule]
    prepare: Callable[[TensorDictBase, int], None] | None = None
    after_loss: dict[str, Callable[[TensorDictBase], None]] = field(default_factory=dict)
    after_step: tuple[Callable[[], None], ...] = ()
    after_batch: Callable[[int], None] | None = None


def budget_frames(cfg) -> int:
    """A run's budget in env steps per seed: ``collector.total_frames`` if set, else ``total_episodes * env.horizon``
    (Reaching Goals counts its budget in episodes)."""
    c = cfg.collector
    if c.get("total_frames") is not None:
        return int(c.total_frames)
    return int(c.total_episodes) * int(cfg.env.horizon)


def epsilon_from_config(cfg) -> LinearSchedule | None:
    """``loss.epsilon`` until the warm-up ends, then linearly to ``loss.epsilon_final`` at the end of the budget
    (:func:`budget_frames`) (None: ``epsilon_final`` unset or equal to ``epsilon``, a constant)."""
    return _to_final(cfg, "epsilon")


def lagrange_multiplier_from_config(cfg) -> LinearSchedule | None:
    """``loss.lagrange_multiplier`` until the warm-up ends, then linearly to ``loss.lagrange_multiplier_final`` at the
    end of the budget, as :func:`epsilon_from_config` (None: unset or equal, a constant). The fixed-multiplier modes
    only (dual ascent moves each multiplier itself; the config check refuses a schedule there)."""
    return _to_final(cfg, "lagrange_multiplier")


def _to_final(cfg, field: str) -> LinearSchedule | None:
    """``loss.<field>`` until the warm-up ends, then linearly to ``loss.<field>_final`` (None: unset or equal)."""
    start, final = cfg.loss[field], cfg.loss.get(f"{field}_final")
    if final is None or float(final) == float(start):
        return None
    return _after_warmup(cfg, float(start), float(final))


def learning_rate_schedule_from_config(cfg) -> LinearSchedule | None:
    """The factor on every optimizer's learning rates: 1 until the warm-up ends, then linearly to
    ``optim.lr_final_fraction`` at the end of the budget (per seed), as :func:`epsilon_from_config` moves epsilon
    (None: the field null or absent, constant learning rates)."""
    final = cfg.optim.get("lr_final_fraction")
    if final is None or float(final) == 1.0:
        return None
    return _after_warmup(cfg, 1.0, float(final))


def obedience_recommendation_weight_from_config(cfg) -> float:
    """The obedience loss's beta (how its constraints read the receiver): ``loss.obedience_recommendation_weight``, a
    constant, or where that is null ``loss.recommendation_weight``, the signaling loss's (whose schedule then moves
    both: :func:`recommendation_scheduled_losses`)."""
    own = cfg.loss.get("obedience_recommendation_weight")
    return float(cfg.loss.get("recommendation_weight", 0.0) if own is None else own)


def recommendation_scheduled_losses(losses: dict[str, LossModule], cfg) -> dict[str, LossModule]:
    """The losses whose beta :func:`prepare_sender` moves along ``recommendation_weight``'s schedule: all of them
    but an obedience loss given its own constant beta (``loss.obedience_recommendation_weight``)."""
    if cfg.loss.get("obedience_recommendation_weight") is None:
        return losses
    return {k: v for k, v in losses.items() if k != "obedience"}


def schedule_after_warmup(cfg, field: str) -> LinearSchedule | None:
    """``warmup.<field>`` until the warm-up ends, then linearly to ``loss.<field>`` at the end of the budget (None:
    both equal, a constant the losses are built with). For ``recommendation_weight``."""
    final = float(cfg.loss.get(field, 0.0))
    start = float(cfg.warmup.get(field, final)) if cfg.get("warmup") is not None else final
    if start == final:
        return None
    return _after_warmup(cfg, start, final)


def _after_warmup(cfg, start: float, end: float) -> LinearSchedule:
    """``start`` until the warm-up ends (or one step before the budget's end), then linearly to ``end`` at the end of
    the run's budget (:func:`budget_frames`, per seed)."""
    budget = budget_frames(cfg)
    return LinearSchedule(start, end, budget, begin=min(_warmup_frames(cfg), budget - 1))


@dataclass
class Method:
    """A method ready to train: the collection policy, its parts, losses, optimizers, target updaters, and the
    update phases the trainer takes in turn (one per collected batch).

    Several seeds (``seeds``): one representation end to end. The env's batch leads with the seed dimension
    (:attr:`ensemble_shape`), every network is a :class:`~msgzoo.modules.seed_ensemble.SeedEnsemble`, and every
    loss reduces its terms per seed (each seed's mean, summed over seeds), so the summed loss gives every seed's
    slice of the stacked parameters its own run's gradient as it is, with no rescaling.
    """

    name: str
    policy: TensorDictSequential
    scheme: nn.Module
    receiver: nn.Module
    sender_losses: dict[str, LossModule]
    receiver_loss: LossModule | None
    optimizers: dict[str, torch.optim.Optimizer]
    target_updaters: list[SoftUpdate] = field(default_factory=list)
    exploration: nn.Module | None = None
    seeds: tuple[int, ...] | None = None  # set when several seeds train together (networks are SeedEnsembles)
    reward_mix: RewardMix | None = None  # the sender learns from SENDER_OBJECTIVE_KEY, written by reward_mix
    joint_epsilon: LinearSchedule | None = None  # the obedience loss's joint_epsilon over env steps (per seed)
    epsilon: LinearSchedule | None = None  # the obedience loss's epsilon over env steps (per seed)
    phases: tuple[UpdatePhase, ...] = ()  # taken in turn, one per collected batch (empty: not trainable, a member)
    readout: PolicyReadout = SCHEME_READOUT  # how evaluation reads its policies (tables, message distribution)
    learning_rate_fields: tuple[str, ...] = ()  # the config fields its optimizers' learning rates come from

    @property
    def num_seeds(self) -> int:
        return 1 if self.seeds is None else len(self.seeds)

    @property
    def ensemble_shape(self) -> tuple[int, ...]:
        """The batch's leading dimensions that index its seeds: ``(num_seeds,)``, or ``()`` for one seed. Its env
        has ``batch_size=[*ensemble_shape, num_envs]``, its batches ``[*ensemble_shape, num_envs, T]``, and its
        losses reduce each ``loss_*`` term per seed over them (:func:`~msgzoo.objectives.common.reduce_per_seed`)."""
        return () if self.seeds is None else (len(self.seeds),)

    def member(self, index: int) -> "Method":
        """Seed ``index``'s policies as a single-seed method (copies of its networks, for evaluation and
        figures; its losses and optimizers are left out)."""
        if self.seeds is None:
            if index != 0:
                raise IndexError(f"index={index} is out of range for a single-seed method.")
            return self
        memo: dict = {}  # the copies of the policy, scheme and receiver share their networks, as the originals do
        return Method(
            self.name, seed_members(self.policy, index, memo), seed_members(self.scheme, index, memo),
            seed_members(self.receiver, index, memo), {}, None, {},
            exploration=copy.deepcopy(self.exploration) if self.exploration is not None else None,
            readout=self.readout, learning_rate_fields=self.learning_rate_fields,
        )

    @property
    def uses_obedience(self) -> bool:
        return "obedience" in self.sender_losses

    def modules(self) -> dict[str, nn.Module]:
        """Every trainable part, by name (for checkpoints and the NaN guard)."""
        out: dict[str, nn.Module] = {"scheme": self.scheme, "receiver": self.receiver}
        out.update({f"loss_{k}": v for k, v in self.sender_losses.items()})
        if self.receiver_loss is not None:
            out["loss_receiver"] = self.receiver_loss
        return out


class Networks:
    """Network bodies sized for an environment: linear maps on one-hot vectors for one-step games
    (bias-free, as the reference), one conv layer + MLP on grids for Reaching Goals.

    With ``seeds`` (distinct ints), every body is a :class:`~msgzoo.modules.seed_ensemble.SeedEnsemble` holding one
    independent copy per seed, initialised as a separate run with that seed would be (``torch.manual_seed(seed)``
    first); ``env`` must then have ``batch_size=[len(seeds), num_envs]``, and the losses are built with
    :attr:`ensemble_shape` ``(len(seeds),)``: they reduce each term per seed (the mean over a seed's samples, summed
    over seeds), so the loss as it is gives every seed its own run's gradient.
    """

    def __init__(
        self, env, *, hidden: Sequence[int] = (32, 32), linear_bias: bool = False, seeds: Sequence[int] | None = None
    ):
        self.env, self.hidden, self.linear_bias = env, tuple(int(h) for h in hidden), linear_bias
        self.seeds = None if seeds is None else tuple(int(s) for s in seeds)
        if self.seeds is not None:
            if len(self.seeds) < 1 or len(set(self.seeds)) != len(self.seeds):
                raise ValueError(f"seeds={list(self.seeds)} is invalid: expected distinct integers.")
            if tuple(env.batch_size[:1]) != (len(self.seeds),) or len(env.batch_size) != 2:
                raise ValueError(
                    f"env.batch_size={list(env.batch_size)} does not match seeds={list(self.seeds)}: expected "
                    f"batch_size=[{len(self.seeds)}, num_envs] (one row of games per seed)."
                )
        self.ensemble_shape = () if self.seeds is None else (len(self.seeds),)  # the losses' seed dims
        # one torch RNG state per seed: seed i's networks are initialised exactly as in a separate run with seed i
        self._rng_states = None if seeds is None else [_seeded_state(s) for s in self.seeds]
        batch_dims = len(env.batch_size)
        obs = env.observation_spec["sender", "observation"].shape[batch_dims:]
        self.grid = len(obs) == 3
        self.num_messages = env.action_spec["sender", "message"].shape[-1]
        self.num_actions = env.action_spec["receiver", "action"].shape[-1]
        self.sender_shape = tuple(obs)
        self.receiver_shape = tuple(env.observation_spec["receiver", "observation"].shape[batch_dims:])

    def _build(self, factory: Callable[[], nn.Module]) -> nn.Module:
        """``factory()``, or with several seeds a :class:`SeedEnsemble` of one ``factory()`` per seed, each drawn
        from its seed's own RNG stream."""
        if self.seeds is None:
            return factory()
        nets = []
        with torch.random.fork_rng(devices=[]):
            for i, state in enumerate(self._rng_states):
                torch.set_rng_state(state)
                nets.append(factory())
                self._rng_states[i] = torch.get_rng_state()
        return SeedEnsemble(nets)

    def sender(self, out_features: int) -> nn.Module:
        if self.grid:
            c, h, w = self.sender_shape
            return self._build(lambda: GridNet(c, h, w, out_features, hidden=self.hidden))
        return self._build(lambda: VectorNet(self.sender_shape[0], out_features, bias=self.linear_bias))

    def receiver(self, out_features: int, *, recommendation_logit: float = 0.0) -> nn.Module:
        """The receiver's body ``(o, sigma) -> out_features``. ``recommendation_logit`` (0: the reference's init): on a
        one-step game, added after the random initialisation to output ``k``'s weight on message ``k`` (``k <
        min(out_features, num_messages)``), so that an initial policy reads message ``k`` as "take action ``k``"; on
        a grid, the random initialisation is then fitted to a policy that reads the message cell as "go there"
        (:func:`fit_to_moves_toward_message`)."""
        if self.grid:
            c, h, w = self.receiver_shape

            def grid_body() -> nn.Module:
                net = ObservationMessageNet(GridNet(c + 1, h, w, out_features, hidden=self.hidden), grid_shape=(h, w))
                if recommendation_logit:
                    fit_to_moves_toward_message(net, self.env.receiver_observes, h, w, recommendation_logit)
                return net

            return self._build(grid_body)
        d = self.receiver_shape[0]

        def body() -> nn.Module:
            net = VectorNet(d + self.num_messages, out_features, bias=self.linear_bias)
            if recommendation_logit:
                k = torch.arange(min(out_features, self.num_messages))
                with torch.no_grad():
                    net.net[0].weight[k, d + k] += recommendation_logit
            return ObservationMessageNet(net)

        return self._build(body)


def _seeded_state(seed: int) -> torch.Tensor:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torch.get_rng_state()


def adam(groups: list[tuple[nn.Module | list, float]], *, beta2: float = 0.999) -> torch.optim.Optimizer:
    """One Adam optimizer with a parameter group per ``(module or parameter list, learning rate)``, in order (the
    checkpoint's and ``resume_override``'s order); a learning rate <= 0 fails naming it. ``beta2``: the decay of
    Adam's second-moment estimate (torch's 0.999 by default; it remembers about ``1 / (1 - beta2)`` steps)."""
    params = []
    for module, lr in groups:
        ps = list(module.parameters()) if isinstance(module, nn.Module) else list(module)
        if lr <= 0:
            raise ValueError(f"learning rate {lr} is invalid: expected a positive learning rate.")
        params.append({"params": ps, "lr": lr})
    return torch.optim.Adam(params, betas=(0.9, beta2))


# ---------------------------------------------------------------- what each method reads from a recipe's config
# One schema per method (as BenchMARL's per-algorithm configs): the fields its builder reads, with their types and
# ranges. The recipes' YAML holds every method's values in one file; a run is checked, hashed and resumed on its
# method's fields alone (plus its task's, msgzoo.runtime.config_validation).
_TAU = dict(ok=lambda v: number(v) and 0 < v <= 1, expected="a soft-update weight in (0, 1]", example=0.02)


@dataclass(frozen=True)
class ReceiverA2CLoss:
    """The A2C receiver's loss (SG, SGOC, PG, PGOC)."""

    receiver_gamma: float = setting(**DISCOUNT)
    receiver_entropy_coeff: float = setting(**COEFFICIENT)
    receiver_gradient: str = setting(one_of(RECEIVER_GRADIENTS), f"one of {RECEIVER_GRADIENTS}", "sampled")


@dataclass(frozen=True)
class ObedienceLoss:
    """The obedience constraints (eq. 6-7) of SGOC and PGOC."""

    lagrange_multiplier: float = setting(non_negative, "lambda >= 0", 5.0)
    lagrange_multiplier_final: float | None = setting(non_negative, "lambda >= 0 (null: a constant lambda)", 20.0)
    epsilon: float = setting(number, "a finite constraint right-hand side", 0.0)
    epsilon_final: float | None = setting(number, "a finite constraint right-hand side", 0.0)
    obedience_mode: str = setting(one_of(MODES), f"one of {MODES}", "lagrangian")
    counterfactual: str = setting(one_of(COUNTERFACTUALS), f"one of {COUNTERFACTUALS}", "uniform")
    obedience_margin: str | None = setting(one_of(MARGINS), f"one of {MARGINS}", "joint")
    joint_epsilon: float = setting(number, "a finite bound on every message's surplus", 0.0)
    dual_lr: float = setting(positive, "a positive dual step", 0.01)
    recommendation_weight: float = setting(probability, "a weight beta in [0, 1]", 0.0)
    obedience_recommendation_weight: float | None = setting(
        probability, "a weight beta in [0, 1] (null: loss.recommendation_weight)", 1.0)
    obedience_noise_allowance: float = setting(non_negative, "k >= 0 standard errors", 0.0)
    obedience_smoothing: float = setting(non_negative, "a width >= 0 in standard errors", 0.0)
    obedience_allowance: str = setting(one_of(ALLOWANCES), f"one of {ALLOWANCES}", "fixed")
    obedience_firing_rate_decay: float = setting(lambda v: number(v) and 0 < v < 1, "a decay in (0, 1)", 0.99)


@dataclass(frozen=True)
class SGLoss(ReceiverA2CLoss):
    """The signaling gradient (eq. 4-5) with its critic's target network."""

    sender_gamma: float = setting(**DISCOUNT)
    receiver_coeff: float = setting(number, "a finite weight", 2.0)
    sender_gradient: str = setting(one_of(SENDER_GRADIENTS), f"one of {SENDER_GRADIENTS}", "sampled")
    sender_entropy_coeff: float = setting(**COEFFICIENT)
    target_tau: float = setting(**_TAU)
    recommendation_weight: float = setting(probability, "a weight beta in [0, 1]", 0.0)


@dataclass(frozen=True)
class SGOCLoss(SGLoss, ObedienceLoss):
    """SG's loss plus the obedience constraints."""


@dataclass(frozen=True)
class PGLoss(ReceiverA2CLoss):
    """The sender as an A2C actor over messages (no target network), or the authors' SARSA Q(s, sigma) sender."""

    sender_gamma: float = setting(**DISCOUNT)
    sender_entropy_coeff: float = setting(**COEFFICIENT)
    pg_critic: str = setting(one_of(PG_CRITICS), f"one of {PG_CRITICS}", "value")
    pg_lookup: str = setting(one_of(PG_LOOKUPS), f"one of {PG_LOOKUPS}", "message")


@dataclass(frozen=True)
class PGOCLoss(PGLoss, ObedienceLoss):
    """PG's loss plus the obedience constraints (whose critic has a target network)."""

    target_tau: float = setting(**_TAU)


@dataclass(frozen=True)
class ReceiverSenderOptim:
    """Adam's learning rates of the receiver-and-sender methods (:data:`_OPTIM_LEARNING_RATES`)."""

    signaling_lr: float = setting(**LEARNING_RATE)
    sender_critic_lr: float = setting(**LEARNING_RATE)
    receiver_actor_lr: float = setting(**LEARNING_RATE)
    receiver_critic_lr: float = setting(**LEARNING_RATE)
    adam_beta2: float = setting(lambda v: number(v) and 0 < v < 1, "a decay in (0, 1)", 0.999)


@dataclass(frozen=True)
class SenderObjective:
    """The sender's training reward ``(1 - w) r^i + w r^j`` (:class:`RewardMix`)."""

    receiver_weight: float = setting(probability, "a weight w in [0, 1]", 0.0)


@dataclass(frozen=True)
class Warmup:
    """The cooperative warm-up: ``w`` from ``receiver_weight`` over each seed's first ``frames`` env steps."""

    frames: int = setting(lambda v: v >= 0, "a number of env steps >= 0 (0: no warm-up)", 0)
    receiver_weight: float = setting(probability, "a weight w in [0, 1]", 0.0)


@dataclass(frozen=True)
class ReceiverWarmup(Warmup):
    """The warm-up of the methods with an A2C receiver: its entropy bonus moves to ``loss.receiver_entropy_coeff``."""

    receiver_entropy_coeff: float = setting(**COEFFICIENT)


@dataclass(frozen=True)
class RecommendationWarmup(ReceiverWarmup):
    """The warm-up of the methods whose losses read messages as recommendations (``loss.recommendation_weight``)."""

    recommendation_weight: float = setting(probability, "a weight beta in [0, 1]", 0.0)


@dataclass(frozen=True)
class ObedienceWarmup(RecommendationWarmup):
    """The warm-up of SGOC and PGOC also moves ``loss.joint_epsilon``."""

    joint_epsilon: float = setting(number, "a finite bound on every message's surplus", 0.0)


@dataclass(frozen=True)
class ReceiverNetwork:
    """The A2C receiver's initial policy (SG, SGOC, PG, PGOC)."""

    receiver_recommendation_logit: float = setting(non_negative, "a logit >= 0 (0: the reference's random init)", 0.0)


@dataclass(frozen=True)
class ReceiverSenderConfig:
    """What SG, SGOC, PG and PGOC read beyond their losses: the learning rates, the sender's objective and the
    receiver's initial policy."""

    network: ReceiverNetwork
    optim: ReceiverSenderOptim
    sender_objective: SenderObjective
    warmup: ReceiverWarmup


@dataclass(frozen=True)
class SGConfig(ReceiverSenderConfig):
    """SG reads the signaling gradient's fields and the A2C receiver's."""

    loss: SGLoss
    warmup: RecommendationWarmup


@dataclass(frozen=True)
class SGOCConfig(ReceiverSenderConfig):
    """SGOC adds the obedience constraints and their warm-up (``warmup.joint_epsilon``)."""

    loss: SGOCLoss
    warmup: ObedienceWarmup


@dataclass(frozen=True)
class PGConfig(ReceiverSenderConfig):
    """PG reads no target-network or signaling-gradient field (``target_tau``, ``receiver_coeff``)."""

    loss: PGLoss


@dataclass(frozen=True)
class PGOCConfig(ReceiverSenderConfig):
    """PGOC adds the obedience constraints, their critic's ``target_tau`` and their warm-up."""

    loss: PGOCLoss
    warmup: ObedienceWarmup


@dataclass(frozen=True)
class DIALTDLoss:
    """DIAL's TD loss and its target network."""

    receiver_gamma: float = setting(**DISCOUNT)
    target_tau: float = setting(**_TAU)


@dataclass(frozen=True)
class DIALSection:
    """DIAL's own section: the DRU's noise, one learning rate, the receiver's epsilon-greedy schedule."""

    noise_std: float = setting(non_negative, "a non-negative noise scale", 0.5)
    lr: float = setting(**dict(LEARNING_RATE, example=3e-4))
    eps_init: float = setting(probability, "an exploration rate in [0, 1]", 0.05)
    eps_end: float = setting(probability, "an exploration rate in [0, 1]", 0.05)
    annealing_frames: int = setting(positive_int, "a positive number of env steps", 1000000)


@dataclass(frozen=True)
class DIALConfig:
    """DIAL reads its own section and the TD loss's fields: no ``optim`` learning rate, no sender objective."""

    loss: DIALTDLoss
    dial: DIALSection


@dataclass(frozen=True)
class MethodSpec:
    """What the shared code knows of a method before it is built (config checks, hashes, memory estimates). The
    method itself is assembled by its recipes (``make_method`` of ``recipes/<method>_<task>.py``).

    Args:
        name: the method's name (``method=`` of a recipe).
        config: the schema of the config fields its recipes' ``make_method`` reads (beyond the task's:
            ``network``, ``env``, ...); a run is checked, hashed and resumed on these alone.

    Keyword Args:
        receiver_on_every_message: its losses run the receiver on every message of every sample (the largest
            tensor of a big map, :func:`~msgzoo.runtime.config_validation.estimate_memory`).
    """

    name: str
    config: type
    receiver_on_every_message: bool = False


def method_spec(method: str) -> MethodSpec:
    """The :class:`MethodSpec` registered as ``method`` (else ``ValueError`` naming the known ones)."""
    if method not in METHOD_SPECS:
        raise ValueError(f"method={method!r} is invalid: expected one of {METHODS}.")
    return METHOD_SPECS[method]


#: The config fields the receiver-and-sender methods' learning rates come from.
OPTIM_LEARNING_RATES = ("optim.signaling_lr", "optim.sender_critic_lr", "optim.receiver_actor_lr",
                         "optim.receiver_critic_lr")


def pg_critic_from_config(cfg) -> str:
    """``loss.pg_critic`` (``value`` where the config has no such field), checked with ``loss.pg_lookup``."""
    critic, lookup = cfg.loss.get("pg_critic", "value"), cfg.loss.get("pg_lookup", "message")
    if critic not in PG_CRITICS:
        fail("loss.pg_critic", critic, f"one of {PG_CRITICS}", "loss.pg_critic=value (msgzoo) or sarsa_q (the authors')")
    if lookup not in PG_LOOKUPS:
        fail("loss.pg_lookup", lookup, f"one of {PG_LOOKUPS}", "loss.pg_lookup=message")
    if lookup != "message" and critic != "sarsa_q":
        fail("loss.pg_lookup", lookup, "message with loss.pg_critic=value (the V(s) critic has no Q(s, .) to look up)",
             "set loss.pg_critic=sarsa_q or loss.pg_lookup=message")
    return critic


def prepare_receiver(batch: TensorDictBase, frames: int, *, scheme, loss, entropy: LinearSchedule | None) -> None:
    """The next step's message the receiver's critic bootstraps on; its entropy bonus on each seed's env steps."""
    attach_next_message(batch, scheme)
    if entropy is not None:
        loss.entropy_coeff = entropy.value(frames)  # one of A2CLoss's schedulable buffers (set in place)


def obedience_noise_allowance_from_config(cfg) -> float:
    """``loss.obedience_noise_allowance`` where the obedience mode has a hinge on a batch estimate (``lagrangian``;
    ``stringent`` with ``counterfactual=all``), else 0: the dual modes price the estimates linearly (no hinge, no
    Jensen bias to allow for) and ``stringent`` with ``uniform`` has one hinge per sample, so there the field is not
    read, as ``loss.dual_lr`` is not read by ``lagrangian``."""
    return float(cfg.loss.get("obedience_noise_allowance", 0.0)) if _hinges_on_estimates(cfg) else 0.0


def obedience_smoothing_from_config(cfg) -> float:
    """``loss.obedience_smoothing``, read where ``loss.obedience_noise_allowance`` is (a hinge on an estimate)."""
    return float(cfg.loss.get("obedience_smoothing", 0.0)) if _hinges_on_estimates(cfg) else 0.0


def obedience_allowance_from_config(cfg) -> dict:
    """``allowance`` and ``firing_rate_decay`` of the obedience loss from ``loss.obedience_allowance`` and
    ``loss.obedience_firing_rate_decay``, read where ``loss.obedience_noise_allowance`` is (a hinge on an estimate;
    elsewhere the fixed allowance, which is then 0)."""
    if not _hinges_on_estimates(cfg):
        return {"allowance": "fixed"}
    return {"allowance": str(cfg.loss.get("obedience_allowance", "fixed")),
            "firing_rate_decay": float(cfg.loss.get("obedience_firing_rate_decay", 0.99))}


def _hinges_on_estimates(cfg) -> bool:
    L = cfg.loss
    return not (L.obedience_mode in DUAL_MODES or (L.obedience_mode == "stringent" and L.counterfactual == "uniform"))


def prepare_sender(
    batch: TensorDictBase, frames: int, *, reward_mix, joint_epsilon, epsilon, obedience, recommendation, losses,
    next_message=None, lagrange_multiplier=None,
) -> None:
    """The schedules, on each seed's own env steps: the sender's objective reward, the joint epsilon, epsilon, the
    Lagrange multiplier, the recommendation weight; and with ``next_message`` (a scheme) the next step's message that
    a SARSA critic bootstraps on."""
    if next_message is not None:
        attach_next_message(batch, next_message)
    if reward_mix is not None:
        reward_mix.write(batch, frames)
    if joint_epsilon is not None:
        obedience.joint_epsilon = joint_epsilon.value(frames)
    if epsilon is not None:
        obedience.epsilon = epsilon.value(frames)
    if lagrange_multiplier is not None:  # a buffer (a checkpoint holds it): filled in place
        obedience.lagrange_multiplier.fill_(lagrange_multiplier.value(frames))
    if recommendation is not None:
        for loss in losses.values():
            if hasattr(loss, "recommendation_weight"):
                loss.recommendation_weight = recommendation.value(frames)


#: Every method, by name: its builder and what the shared code must know of it before building.
METHOD_SPECS: dict[str, MethodSpec] = {
    "sgoc": MethodSpec("sgoc", SGOCConfig, receiver_on_every_message=True),
    "sg": MethodSpec("sg", SGConfig, receiver_on_every_message=True),
    "pgoc": MethodSpec("pgoc", PGOCConfig, receiver_on_every_message=True),
    "pg": MethodSpec("pg", PGConfig),
    "dial": MethodSpec("dial", DIALConfig),
}
METHODS = tuple(METHOD_SPECS)
