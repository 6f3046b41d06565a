"""The training loop every recipe shares: collect with TorchRL's ``Collector``, update, log, checkpoint.

Each collected batch goes to one of the method's update phases (:class:`~msgzoo.training.methods.UpdatePhase`), taken in
turn: the reference's methods alternate two phases on fresh on-policy batches (collect a batch and update the
receiver, collect another and update the sender); DIAL has one phase, both agents from every batch with one loss.
The loop itself knows no method: the phases say which losses, which optimizer and what runs around the step.

The data path is TorchRL's (as its A2C/PPO recipes): ``Collector`` -> ``ReplayBuffer`` (``LazyTensorStorage`` +
``SamplerWithoutReplacement``) -> minibatch updates, ``epochs`` passes over each batch in ``minibatches``
minibatches. The buffer holds one batch at a time (on-policy); its items are the batch's environments, each with
its ``T`` consecutive steps (so trajectory-based targets still see whole rows), and with several seeds every
minibatch takes the same environments of every seed. One epoch of one minibatch is the whole batch in collection
order (no shuffle, no random draw): exactly the update on the collected batch. The buffer stores only the keys the
method's losses declare they read (their ``in_keys``, :attr:`Trainer.buffer_keys`; every key when a loss declares
none): copying the rest in and out of it was a sixth of a one-step loop's time (docs/performance.md). A hook or loss that reads a key it does
not declare adds it to ``buffer_keys`` before the first update (the buffer's storage takes its keys from the first
batch it holds).

Several seeds train as one run with a seed axis (:attr:`~msgzoo.training.methods.Method.ensemble_shape`): batches
are ``[num_seeds, num_envs, T]``, the losses reduce per seed (:func:`~msgzoo.objectives.common.reduce_per_seed`),
and every count the trainer keeps (budget, batch size, ``frames``, schedules, log steps) is per seed, what one
separate run would count. Only TorchRL's ``Collector``, which counts the steps of every env of its batch, is told
the total over seeds.
"""
from __future__ import annotations

import contextlib
import copy
import math
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.collectors import Collector
from torchrl.data import LazyTensorStorage, ReplayBuffer, SamplerWithoutReplacement

from msgzoo.modules.fast import fuse_policy
from msgzoo.runtime.checkpoint import (
    GracefulInterrupt,
    TrainingInterrupted,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from msgzoo.runtime.config_validation import check_resume_config
from msgzoo.runtime.experiment import Experiment, to_jsonable
from msgzoo.runtime.nan_guard import NonFiniteError, check_finite
from msgzoo.training.methods import (
    LinearSchedule,
    Method,
    UpdatePhase,
    budget_frames,
    learning_rate_schedule_from_config,
)


#: Version of the trainer's checkpoint layout (2: tensors and plain values only, with the run's config; 3: ``frames``
#: and the history's ``frames`` count each seed's env steps, where 2 counted every seed's: 2 converts on load).
CHECKPOINT_FORMAT = 3


def upgrade_checkpoint(state: dict, checkpoint: str | Path = "") -> dict:
    """``state`` (a :meth:`Trainer.state_dict`) in the current layout :data:`CHECKPOINT_FORMAT`: a layout-2 state
    (``frames`` over all seeds) is converted, the per-seed counts being its counts divided by the run's
    ``num_seeds`` (whole batches of every seed, so exact); any other layout raises ``ValueError`` naming
    ``checkpoint``."""
    layout = state.get("format")
    if layout == CHECKPOINT_FORMAT:
        return state
    if layout == 2:
        seeds = int((state.get("config") or {}).get("num_seeds") or 1)
        history = [{**row, "frames": row["frames"] // seeds} for row in state["history"]]
        return {**state, "format": CHECKPOINT_FORMAT, "frames": state["frames"] // seeds, "history": history}
    raise ValueError(
        f"checkpoint {checkpoint or '(state)'} has layout {layout!r}; this msgzoo reads layouts 2 and "
        f"{CHECKPOINT_FORMAT} (checkpoints of older versions cannot be resumed). Fix: start a new run without resume=."
    )


def collector_carrier(collector: Collector) -> TensorDictBase:
    """The collector's pending inputs: the tensordict its next batch starts from (the environments' current
    observations, as the last step left them). An exact resume saves and restores it.

    TorchRL 0.14's ``Collector`` keeps it in the private ``_carrier`` and offers no public accessor:
    ``Collector.state_dict()`` holds the env's and policy's state dicts and the frame counters, not the pending
    inputs, and ``Collector.reset()`` draws new initial states. This function is the one place in msgzoo that
    reads the private attribute; the trainer writes into the returned tensordict in place (``update_``).
    """
    return collector._carrier


def _all_finite(tensors) -> torch.Tensor:
    """One device-side flag: every element of ``tensors`` is finite (no host sync, no norm that could overflow)."""
    tensors = [t.detach().reshape(-1) for t in tensors]
    if not tensors:  # e.g. no parameter received a gradient
        return torch.tensor(True)
    return torch.isfinite(torch.cat(tensors)).all()


def _hyperparameters(method: Method) -> dict:
    """The hyperparameters a checkpoint also holds: the optimizers' learning rates and Adam betas, the Lagrange
    multipliers."""
    return {
        "lr": {k: [g["lr"] for g in opt.param_groups] for k, opt in method.optimizers.items()},
        "betas": {k: [g["betas"] for g in opt.param_groups] for k, opt in method.optimizers.items()},
        "lagrange_multiplier": {
            k: m.lagrange_multiplier.clone() for k, m in method.modules().items() if hasattr(m, "lagrange_multiplier")
        },
    }


def _apply_overrides(method: Method, fresh: dict, overrides: Sequence[str]) -> None:
    """Puts back the config's values of the ``resume_override`` fields over the checkpoint's (the other fields
    equal the checkpoint's, :func:`~msgzoo.runtime.config_validation.check_resume_config` made sure)."""
    # an override names a learning rate's field or a section above it (optim, optim.signaling_lr)
    if any(f == o or f.startswith(o + ".") for o in overrides for f in method.learning_rate_fields):
        for k, opt in method.optimizers.items():
            for group, lr in zip(opt.param_groups, fresh["lr"][k]):
                group["lr"] = lr
    if any(o in ("optim", "optim.adam_beta2") for o in overrides):  # torch's load_state_dict restored the old betas
        for k, opt in method.optimizers.items():
            for group, betas in zip(opt.param_groups, fresh["betas"][k]):
                group["betas"] = betas
    if any(o in ("loss", "loss.lagrange_multiplier") for o in overrides):
        modules = method.modules()
        for k, value in fresh["lagrange_multiplier"].items():
            modules[k].lagrange_multiplier.copy_(value)


def _loss_total(out: TensorDictBase, prefix: str, metrics: dict, num_seeds: int) -> torch.Tensor:
    total = 0.0
    for key, value in out.items():
        if value.numel() == 1:  # scalars are logged (a dual loss's per-constraint estimates are not)
            # a loss term sums the seeds' losses (reduce_per_seed): logged as their mean, a single run's scale
            loss = key.startswith("loss_") and num_seeds > 1
            metrics[f"{prefix}/{key}"] = value.detach() / num_seeds if loss else value.detach()
        if key.startswith("loss_"):
            total = total + value
    return total


def _keys_read(method: Method) -> list | None:
    """The keys the losses of every phase of ``method`` declare they read (their ``in_keys``: one set for all phases,
    which share the replay buffer's storage), or None when a loss declares none."""
    keys = []
    for phase in method.phases:
        for loss in phase.losses.values():
            declared = getattr(loss, "in_keys", None)
            if not declared:
                return None
            keys += [k for k in declared if k not in keys]
    return keys


class Trainer:
    """Runs ``method`` on ``env`` for ``total_frames`` environment steps of each seed.

    Args:
        env: a batched msgzoo environment (``batch_size=[num_envs]``; with several seeds ``[num_seeds, num_envs]``,
            the method's :attr:`~msgzoo.training.methods.Method.ensemble_shape` first).
        method: a recipe's ``make_method`` (``recipes.build_method``).
        experiment: where logs, checkpoints and the summary go.

    Keyword Args:
        total_frames: the budget in environment steps per seed, what a single run would have (each env of a
            seed's row counts once per step).
        frames_per_batch: steps per collected batch and seed (``num_envs * steps_per_env``).
        max_grad: gradients are clamped elementwise to ``[-max_grad, max_grad]`` (the reference's 1).
        log_interval: log every this many batches (the one host sync of the loop, where the NaN flag is read).
        checkpoint_interval: save ``checkpoint.pt`` every this many batches (0: only at the end / on signal).
        epochs: passes over each collected batch (``optim.epochs``).
        minibatches: minibatches per pass, each ``1 / minibatches`` of the batch's environments, drawn without
            replacement (``optim.minibatches``; it must divide the number of environments per seed).
        learning_rate_schedule: a factor on every optimizer's learning rates over each seed's env steps (e.g.
            :func:`~msgzoo.training.methods.learning_rate_schedule_from_config`): before each step, each parameter
            group's rate is its rate when the trainer was made times the factor at :attr:`frames`, so a resumed run
            steps with the rates the uninterrupted one had. None: the rates stay as they are.
        reward_transform: ``callable(batch) -> batch`` applied to each collected batch before the update sees it
            (e.g. :class:`~msgzoo.training.payoff_normalization.PayoffNormalization`); it must leave ``batch`` as it
            was, whose rewards are the ones logged. None: the update sees the batch as collected.
        evaluate: optional ``callable(method) -> dict`` logged at every log step (e.g. exact payoffs).
        episode_length: rewards per step are reported times this ("return per episode"); 1 for one-step games.
        seed_experiments: with a multi-seed ``method`` (``method.seeds``), one :class:`Experiment` per seed: each
            gets its seed's curves (train rewards, ``evaluate`` of its member, time) on its own env-step axis,
            as a separate run would; ``experiment`` then holds the checkpoint and the cross-seed means (losses
            are logged there only, as means over seeds).

    Several seeds: the losses reduce each term per seed (each seed's mean, summed over seeds), so the loss is
    backpropagated as it is and every seed's slice of the stacked parameters gets its own run's gradient; Adam and
    the elementwise clamp act on it as in a separate run. :attr:`frames` counts each seed's env steps (all seeds
    step together); the logged losses are their means over seeds.
    """

    def __init__(
        self,
        env,
        method: Method,
        experiment: Experiment,
        *,
        total_frames: int,
        frames_per_batch: int,
        max_grad: float = 1.0,
        log_interval: int = 10,
        checkpoint_interval: int = 0,
        evaluate: Callable[[Method], dict] | None = None,
        episode_length: int = 1,
        device: torch.device | str = "cpu",
        seed_experiments: Sequence[Experiment] | None = None,
        epochs: int = 1,
        minibatches: int = 1,
        learning_rate_schedule: LinearSchedule | None = None,
        reward_transform: Callable[[TensorDictBase], TensorDictBase] | None = None,
    ):
        self.num_seeds = method.num_seeds
        seed_experiments = list(seed_experiments or [])
        if self.num_seeds > 1 and len(seed_experiments) != self.num_seeds:
            raise ValueError(
                f"seed_experiments has {len(seed_experiments)} entries: expected one per seed ({self.num_seeds})."
            )
        self.seed_experiments = seed_experiments
        self.seed_history: list[list[dict]] = [[] for _ in seed_experiments]
        self._seed_rewards: torch.Tensor | None = None
        self.env, self.method, self.exp = env, method, experiment
        self.total_frames, self.frames_per_batch = int(total_frames), int(frames_per_batch)
        self.max_grad, self.log_interval = float(max_grad), max(1, int(log_interval))
        self.checkpoint_interval, self.evaluate = int(checkpoint_interval), evaluate
        self.episode_length, self.device = episode_length, torch.device(device)
        self.iteration, self.frames = 0, 0  # frames: env steps of each seed
        self.wall_time = 0.0  # training seconds, over every session of a resumed run
        self.cpu_time = 0.0  # this process's CPU seconds in the last training session
        self._latest: dict = {}  # the newest value of every metric, logged at the next log step
        self.interrupted: str | None = None  # the signal that stopped the last train(), if any
        self.resumed_from: Path | None = None
        self.resume_override: list[str] = []
        # the first batch whose loss, gradient or updated parameters were non-finite (-1: none); kept on the
        # device and read only where the loop syncs anyway (log, checkpoint)
        self._first_bad = torch.tensor(-1, device=self.device)
        self._reward_sums: torch.Tensor | None = None  # sender, receiver mean step rewards summed since the last log
        self._reward_batches = 0
        self.checkpoint_path = Path(experiment.run_dir) / "checkpoint.pt"
        self.history: list[dict] = []
        self.epochs, self.minibatches = int(epochs), int(minibatches)
        self.buffer = self._replay_buffer(env)
        # what the replay buffer stores of each batch: the keys the losses declare they read (None: every key)
        self.buffer_keys: list | None = _keys_read(method)
        self.learning_rate_schedule = learning_rate_schedule
        self.reward_transform = reward_transform
        # the config's rates, what the schedule scales (a checkpoint's optimizers hold scaled ones)
        self._base_learning_rates = {k: [g["lr"] for g in opt.param_groups] for k, opt in method.optimizers.items()}

    @classmethod
    def from_config(
        cls, cfg, env, method: Method, experiment: Experiment, *, frames_per_batch: int,
        evaluate: Callable[[Method], dict] | None = None, episode_length: int = 1,
        reward_transform: Callable[[TensorDictBase], TensorDictBase] | None = None,
    ) -> "Trainer":
        """A recipe's trainer: the budget of ``cfg`` per seed (:func:`~msgzoo.training.methods.budget_frames`), its
        ``optim.{max_grad, epochs, minibatches, lr_final_fraction}``, ``logger.{log_interval, checkpoint_interval}``
        and ``device``, one run folder per seed when several train together; resumed from ``cfg.resume`` if set."""
        trainer = cls(
            env, method, experiment,
            total_frames=budget_frames(cfg), frames_per_batch=frames_per_batch, max_grad=cfg.optim.max_grad,
            log_interval=cfg.logger.log_interval, checkpoint_interval=cfg.logger.checkpoint_interval,
            evaluate=evaluate, episode_length=episode_length, device=cfg.device,
            seed_experiments=experiment.seed_runs(cfg, method.name) if method.seeds else None,
            epochs=cfg.optim.epochs, minibatches=cfg.optim.minibatches,
            learning_rate_schedule=learning_rate_schedule_from_config(cfg), reward_transform=reward_transform,
        )
        if cfg.resume:
            trainer.resume(cfg.resume, cfg.get("resume_override") or ())
        return trainer

    @property
    def frames_all_seeds(self) -> int:
        """Every seed's env steps together (:attr:`frames` is each seed's): the work done, what ``seeds_summary.json``
        reports as ``env_steps`` and the throughput counts."""
        return self.frames * self.num_seeds

    # -- updates -------------------------------------------------------------------------------
    def _apply(self, name: str, loss: torch.Tensor, metrics: dict) -> None:
        opt = self.method.optimizers[name]
        if self.learning_rate_schedule is not None:
            factor = self.learning_rate_schedule.value(self.frames)
            for group, base in zip(opt.param_groups, self._base_learning_rates[name]):
                group["lr"] = base * factor
        opt.zero_grad(set_to_none=True)
        loss.backward()  # per-seed reductions: each seed's slice gets its own run's gradient
        params = [p for group in opt.param_groups for p in group["params"]]
        # every update, before the clamp (which turns an inf gradient into max_grad): a device flag, no sync
        finite = torch.isfinite(loss.detach()).all() & _all_finite([p.grad for p in params if p.grad is not None])
        for group in opt.param_groups:
            torch.nn.utils.clip_grad_value_(group["params"], self.max_grad)
        if (self.iteration + 1) % self.log_interval == 0:  # the batch whose state is kept as "last good"
            losses = {k: v for k, v in metrics.items() if "/loss_" in k} or {f"{name}_loss": loss}
            check_finite(losses, self.method.modules())  # names the offender
        opt.step()
        finite = finite & _all_finite(params)  # a huge step can overflow finite gradients into inf parameters
        self._first_bad = torch.where(~finite & (self._first_bad < 0), self.iteration, self._first_bad)

    def _raise_if_nonfinite(self) -> None:
        """Raises :class:`NonFiniteError` if an update since the start went non-finite (one host sync)."""
        bad = int(self._first_bad)
        if bad >= 0:
            raise NonFiniteError(
                f"the loss, a gradient or the updated parameters of batch {bad} (of the {self.method.name!r} run) "
                f"are nan or inf. Hint: lower the learning rate, clip gradients, or check the reward scale.",
                what=f"update of batch {bad}", kind="nan/inf",
            )

    def _replay_buffer(self, env) -> ReplayBuffer:
        """One batch's environments (with all their steps and seeds), sampled in ``minibatches`` per epoch."""
        for name, value in (("epochs", self.epochs), ("minibatches", self.minibatches)):
            if value < 1:
                raise ValueError(f"optim.{name}={value} is invalid: expected a positive integer.")
        rows = int(env.batch_size[-1])  # environments per seed: [num_envs] or [num_seeds, num_envs]
        if rows % self.minibatches:
            raise ValueError(
                f"optim.minibatches={self.minibatches} does not divide the {rows} environments of a batch (per seed): "
                f"pick a divisor of {rows}, or change env.num_envs."
            )
        return ReplayBuffer(
            storage=LazyTensorStorage(rows, device=self.device),
            # one minibatch: the batch in collection order, without drawing a permutation from the RNG
            sampler=SamplerWithoutReplacement(drop_last=True, shuffle=self.minibatches > 1),
            batch_size=rows // self.minibatches,
        )

    def update(self, batch: TensorDictBase, metrics: dict | None = None) -> None:
        """Updates on ``batch`` with the method's next phase (they are taken in turn, one per batch)."""
        phases = self.method.phases
        self.update_phase(phases[self.iteration % len(phases)], batch, metrics)

    def update_phase(self, phase: UpdatePhase, batch: TensorDictBase, metrics: dict | None = None) -> None:
        """``phase`` on ``batch``: its preparation on the whole batch, then ``epochs`` passes of ``minibatches``
        steps (losses summed, optimizer step, after-step hooks), then its after-batch hook. Metrics (into
        ``metrics`` if given) are the last step's; the next log reports them."""
        metrics = {} if metrics is None else metrics
        if self.reward_transform is not None:  # what the learners see; the collected batch keeps the game's units
            batch = self.reward_transform(batch)
        if phase.prepare is not None:
            phase.prepare(batch, self.frames)  # schedules run on each seed's own env steps
        seeds = self.num_seeds > 1  # the seed dim goes behind the environments' dim, which the buffer indexes
        if self.buffer_keys is not None:  # the buffer copies only what the losses read
            batch = batch.select(*self.buffer_keys, strict=False)
        self.buffer.empty()  # a fresh permutation per batch: a resumed run draws what the uninterrupted one drew
        self.buffer.extend(batch.transpose(0, 1) if seeds else batch)
        for _ in range(self.epochs):
            for minibatch in self.buffer:
                self._step(phase, minibatch.transpose(0, 1).contiguous() if seeds else minibatch, metrics)
        if phase.after_batch is not None:
            phase.after_batch(self._seed_frames(batch))
        self._latest.update(metrics)

    def _seed_frames(self, batch: TensorDictBase) -> int:
        """Env steps of each seed in ``batch`` (``[*ensemble_shape, num_envs, T]``): those of one seed's row."""
        return batch.batch_size[len(self.method.ensemble_shape):].numel()

    def _step(self, phase: UpdatePhase, minibatch: TensorDictBase, metrics: dict) -> None:
        total = 0.0
        for name, loss_module in phase.losses.items():
            out = loss_module(minibatch)
            if name in phase.after_loss:
                phase.after_loss[name](out)
            total = total + _loss_total(out, name, metrics, self.num_seeds)
        self._apply(phase.name, total, metrics)
        for hook in phase.after_step:
            hook()

    # -- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything a resume needs, as tensors and plain Python values only (checkpoints load with
        ``weights_only=True``), with the run's config (a resume refuses a changed one)."""
        return {
            "format": CHECKPOINT_FORMAT,
            "config": to_jsonable(self.exp.config),
            "iteration": self.iteration,
            "frames": self.frames,
            "wall_time": self.wall_time,
            # logged rows are never changed once appended: copies of the lists, not of the rows
            "history": list(self.history),
            "seed_history": [list(h) for h in self.seed_history],
            "policy": self.method.policy.state_dict(),
            "losses": {k: v.state_dict() for k, v in self.method.modules().items() if k.startswith("loss_")},
            "optimizers": {k: v.state_dict() for k, v in self.method.optimizers.items()},
            "rng": rng_state(self._generators()),
            # the collector's pending inputs (the next batch's first observations) make a resume exact
            "carrier": self._carrier_state(),
        }

    def _snapshot(self) -> dict:
        """A :meth:`state_dict` that later training does not change (the state kept as "last good"): the tensors
        and counters copied, the logs' rows shared (they never change), so a snapshot costs no more as logs grow."""
        state = self.state_dict()
        logs = {k: state.pop(k) for k in ("history", "seed_history")}
        return {**copy.deepcopy(state), **logs}

    def _carrier_state(self):
        """The collector's pending inputs (live during training, the last ones kept after it) as a plain dict."""
        collector = getattr(self, "_collector", None)
        carrier = collector_carrier(collector) if collector is not None else getattr(self, "_last_carrier", None)
        if carrier is None:
            return None
        return {"batch_size": list(carrier.batch_size), "data": carrier.to_dict()}

    def _generators(self) -> dict:
        gen = getattr(self.env, "_generator", None)
        return {"env": gen} if isinstance(gen, torch.Generator) else {}

    def load_state_dict(self, state: dict, resume_override: Sequence[str] = (), *, checkpoint: str | Path = "") -> None:
        """Restores a :meth:`state_dict` (of an older layout: through :func:`upgrade_checkpoint`, whose errors name
        ``checkpoint``). ``resume_override``: the config fields whose values in the run's config replace the
        checkpoint's (learning rates, the Lagrange multiplier); see
        :func:`~msgzoo.runtime.config_validation.check_resume_config`."""
        state = upgrade_checkpoint(state, checkpoint)
        fresh = _hyperparameters(self.method)  # the values of the run's config, before the checkpoint's replace them
        self.iteration, self.frames = state["iteration"], state["frames"]
        self.wall_time = float(state["wall_time"])
        self.history = list(state["history"])
        if len(state["seed_history"]) == len(self.seed_history):
            self.seed_history = [list(h) for h in state["seed_history"]]
        self.method.policy.load_state_dict(state["policy"])
        modules = self.method.modules()
        for k, v in state["losses"].items():
            modules[k].load_state_dict(v)
        for k, v in state["optimizers"].items():
            self.method.optimizers[k].load_state_dict(v)
        _apply_overrides(self.method, fresh, resume_override)
        self.resume_override = list(resume_override)
        # RNG states and the collector's carrier are restored once the collector exists (its start resets
        # the env and may draw random numbers)
        self._pending_restore = state

    def save(self) -> Path:
        return save_checkpoint(self.checkpoint_path, self.state_dict())

    def resume(self, path: str | Path, resume_override: Sequence[str] = ()) -> None:
        """Continues from ``path``; refuses a checkpoint made with another config (but for ``resume_override``)."""
        state = load_checkpoint(path)
        check_resume_config(state.get("config"), self.exp.config, resume_override, checkpoint=path)
        self.load_state_dict(state, resume_override, checkpoint=path)
        self.resumed_from = Path(path).resolve()

    def resume_record(self) -> dict:
        """What a summary records about a resume: the checkpoint continued from and the fields overridden."""
        if self.resumed_from is None:
            return {}
        return {"resumed_from": str(self.resumed_from), "resume_override": list(self.resume_override)}

    def finish_if_interrupted(self) -> None:
        """After :meth:`train` stopped on a signal: writes the run's summaries with ``status: interrupted`` (no
        final evaluation) and raises :class:`~msgzoo.runtime.checkpoint.TrainingInterrupted` (exit status 128 + signal,
        so schedulers and Hydra sweeps stop too). Does nothing after a run that was not interrupted."""
        if self.interrupted is None:
            return
        note = {
            "status": "interrupted", "signal": self.interrupted, "checkpoint": str(self.checkpoint_path),
            "resume_with": f"resume={self.checkpoint_path}", "wall_time_s": self.wall_time, **self.resume_record(),
        }
        for exp, history in zip(self.seed_experiments, self.seed_history):
            exp.finish({**note, "env_steps": self.frames, "budget_env_steps": self.total_frames, "history": history})
        # the run's own summary counts every seed's steps (seeds_summary.json's env_steps: the total over seeds)
        self.exp.finish(
            {**note, "env_steps": self.frames_all_seeds, "budget_env_steps": self.total_frames * self.num_seeds,
             "history": self.history},
            filename="seeds_summary.json" if self.seed_experiments else "summary.json",
        )
        raise TrainingInterrupted(self.interrupted, self.checkpoint_path)

    # -- loop ----------------------------------------------------------------------------------
    def train(self) -> dict:
        """Trains until the budget is spent (or SIGINT/SIGTERM); returns the last logged metrics. The loop the
        recipes write out: :meth:`collecting`, then :meth:`update` and :meth:`end_of_batch` per batch."""
        with self.collecting() as collector:
            for batch in collector:
                self.update(batch)
                if self.end_of_batch(batch):
                    break
        return self.exp.last_metrics

    @contextlib.contextmanager
    def collecting(self) -> Iterator[Iterable[TensorDictBase]]:
        """TorchRL's ``Collector`` over the rest of the budget (whole batches; nothing on a finished run), with
        what a run needs around it: the resume's RNG and pending inputs restored, the progress bar, SIGINT/SIGTERM
        caught (:meth:`end_of_batch` then checkpoints and stops), and on any error the newest good state saved
        before it propagates. Times the session: :attr:`wall_time` (over every session of a resumed run) and
        :attr:`cpu_time` (this process's CPU seconds in this session)."""
        remaining = self.total_frames - self.frames
        if remaining <= 0:  # a finished run resumed with the same budget: nothing to train
            if self.history:
                self.exp.last_metrics = {k: v for k, v in self.history[-1].items() if k != "frames"}
            yield ()
            return
        # The standard scheme + receiver sequence collects through an equivalent fused module (same networks, same
        # keys and random draws, less per-step overhead); any other policy is used as it is.
        policy = fuse_policy(self.method.policy) or self.method.policy
        # TorchRL's Collector counts the steps of every env of its batch: every seed's
        collector_batch = self.frames_per_batch * self.num_seeds
        collector = Collector(
            self.env,
            policy,
            frames_per_batch=collector_batch,
            total_frames=math.ceil(remaining / self.frames_per_batch) * collector_batch,  # whole batches
            device=self.device,
            auto_register_policy_transforms=False,  # the policy needs no env transform
        )
        self._collector = collector
        pending = getattr(self, "_pending_restore", None)
        if pending is not None:
            set_rng_state(pending["rng"], self._generators())
            if pending.get("carrier") is not None:
                carrier = TensorDict(pending["carrier"]["data"], batch_size=pending["carrier"]["batch_size"])
                live = collector_carrier(collector)
                live.update_(carrier.to(live.device))
            self._pending_restore = None
        pbar = self.exp.progress(total=self.total_frames, desc=self.exp.run_name)
        pbar.update(self.frames)
        self._shown = self.frames
        self.interrupted = None
        # time/wall_s and steps/s count the sessions before a resume too
        self._start = time.perf_counter() - self.wall_time
        cpu_start = time.process_time()
        self._last_good, self._saved_iteration = None, -1
        self._latest = {}  # the newest value of every metric, from every phase
        with GracefulInterrupt() as interrupt:
            self._interrupt = interrupt
            try:
                yield collector
            except Exception:  # NonFiniteError, or any crash: keep the newest good state to resume from
                # the last logged state is the newest known good one, unless a periodic checkpoint is newer
                if self._last_good is not None and self._last_good["iteration"] > self._saved_iteration:
                    save_checkpoint(self.checkpoint_path, self._last_good)
                raise
            finally:
                # kept so that a checkpoint after training continues exactly
                self._last_carrier = collector_carrier(collector).clone()
                collector.shutdown()
                self._collector = self._interrupt = self._last_good = None
                self.exp.close_progress()
                self.wall_time = time.perf_counter() - self._start
                self.cpu_time = time.process_time() - cpu_start

    def end_of_batch(self, batch: TensorDictBase) -> bool:
        """After a batch's update: counts its env steps, logs every ``log_interval`` batches (reading the NaN flag,
        keeping the state as "last good"), checkpoints every ``checkpoint_interval``. Returns True when the run must
        stop: a SIGINT/SIGTERM arrived (a checkpoint is then saved). Call inside :meth:`collecting`."""
        self.frames += self._seed_frames(batch)
        self.iteration += 1
        self._accumulate_rewards(batch)
        if self.iteration % self.log_interval == 0 or self.frames >= self.total_frames:
            self._raise_if_nonfinite()
            self._reward_metrics(self._latest)
            self.wall_time = time.perf_counter() - self._start
            self._log(self._latest, self._start)
            # a copy (state_dict() holds live tensors): what is saved if a NaN appears later
            self._last_good = self._snapshot()
        interrupt = self._interrupt
        save = self.checkpoint_interval and self.iteration % self.checkpoint_interval == 0
        if save or interrupt.requested:
            self._raise_if_nonfinite()  # never overwrite a good checkpoint with a bad state
            self.wall_time = time.perf_counter() - self._start
            self.save()
            self._saved_iteration = self.iteration
        if interrupt.requested:
            self.interrupted = interrupt.signal_name
            print(f"\n{interrupt.signal_name}: checkpoint saved to {self.checkpoint_path}; "
                  f"resume with resume={self.checkpoint_path}")
            return True
        return False

    def _accumulate_rewards(self, batch: TensorDictBase) -> None:
        """Sums the batch's mean step rewards per seed (no host sync); :meth:`_reward_metrics` averages them at log
        time."""
        rewards = (batch["next", "sender", "reward"], batch["next", "receiver", "reward"])
        step = torch.stack([r.reshape(self.num_seeds, -1).mean(-1) for r in rewards], -1)  # [seeds, 2]
        self._reward_sums = step if self._reward_sums is None else self._reward_sums + step
        self._reward_batches += 1

    def _reward_metrics(self, metrics: dict) -> None:
        """``train/{sender,receiver}_reward``: mean step reward over the batches since the last log, times
        ``episode_length`` (a return per episode for fixed-length episodes)."""
        if self._reward_sums is None:
            return
        per_seed = self._reward_sums * (self.episode_length / self._reward_batches)
        mean = per_seed.mean(0)
        metrics["train/sender_reward"], metrics["train/receiver_reward"] = mean[0], mean[1]
        self._seed_rewards = per_seed
        self._reward_sums, self._reward_batches = None, 0

    def _log(self, metrics: dict, start: float) -> None:
        scalars = {k: v for k, v in metrics.items()}
        seed_evals = None
        if self.evaluate is not None and self.num_seeds > 1:
            seed_evals = [self.evaluate(self.method.member(i)) for i in range(self.num_seeds)]
            scalars.update({f"eval/{k}": sum(float(e[k]) for e in seed_evals) / len(seed_evals) for k in seed_evals[0]})
        elif self.evaluate is not None:
            scalars.update({f"eval/{k}": v for k, v in self.evaluate(self.method).items()})
        elapsed = max(time.perf_counter() - start, 1e-9)
        if self.seed_experiments:
            scalars.update(self._log_seeds(seed_evals, elapsed))
        scalars["time/env_steps_per_s"] = self.frames_all_seeds / elapsed  # the throughput
        scalars["time/wall_s"] = elapsed
        self.exp.log(scalars, step=self.frames)
        row = {"frames": self.frames, **{k: float(v) for k, v in self.exp.last_metrics.items()}}
        self.history.append(row)
        live = {k.split("/")[-1]: self.exp.last_metrics[k] for k in self._live_keys() if k in self.exp.last_metrics}
        self.exp.update_progress(self.frames - self._shown, live)
        self._shown = self.frames

    def _log_seeds(self, seed_evals: list[dict] | None, elapsed: float) -> dict:
        """Each seed's own log, on the env-step axis of each seed (:attr:`frames`), as a separate run writes it.
        Returns the seeds' reward curves as ``seed<k>/<metric>`` for the run that holds all seeds (W&B)."""
        frames, shared = self.frames, {}
        rewards = self._seed_rewards.tolist() if self._seed_rewards is not None else None
        for i, exp in enumerate(self.seed_experiments):
            scalars: dict = {}
            if rewards is not None:
                scalars["train/sender_reward"], scalars["train/receiver_reward"] = rewards[i]
            if seed_evals is not None:
                scalars.update({f"eval/{k}": v for k, v in seed_evals[i].items()})
            scalars["time/env_steps_per_s"] = frames / elapsed
            scalars["time/wall_s"] = elapsed
            exp.log(scalars, step=frames)
            self.seed_history[i].append({"frames": frames, **{k: float(v) for k, v in exp.last_metrics.items()}})
            shared.update({f"seed{exp.seed}/{k}": v for k, v in exp.last_metrics.items() if "reward" in k})
        return shared

    def _live_keys(self) -> list[str]:
        if self.evaluate is not None:
            return ["eval/sender_reward", "eval/receiver_reward"]
        return ["train/sender_reward", "train/receiver_reward"]
