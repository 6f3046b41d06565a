"""The training loop every recipe shares: collect with TorchRL's ``Collector``, update, log, checkpoint.

The reference alternates two phases on fresh on-policy batches: collect a batch and update the
receiver, collect another and update the sender. DIAL trains both from every batch with one loss.
"""
from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import Callable, Sequence

import torch
from tensordict import TensorDictBase
from torchrl.collectors import Collector

from msgzoo.checkpoint import GracefulInterrupt, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from msgzoo.experiment import Experiment
from msgzoo.methods import Method
from msgzoo.modules.fast import fuse_policy
from msgzoo.nan_guard import NonFiniteError, check_finite
from msgzoo.objectives import ObedienceConstraintLoss, attach_next_message


def _loss_total(out: TensorDictBase, prefix: str, metrics: dict) -> torch.Tensor:
    total = 0.0
    for key, value in out.items():
        if value.numel() == 1:  # scalars are logged (a dual loss's per-message estimates are not)
            metrics[f"{prefix}/{key}"] = value.detach()
        if key.startswith("loss_"):
            total = total + value
    return total


class Trainer:
    """Runs ``method`` on ``env`` for ``total_frames`` environment steps.

    Args:
        env: a batched msgzoo environment (``batch_size=[num_envs]``).
        method: from :func:`msgzoo.methods.build_method`.
        experiment: where logs, checkpoints and the summary go.

    Keyword Args:
        total_frames: the budget in environment steps (each env of the batch counts once per step).
        frames_per_batch: steps per collected batch (``num_envs * steps_per_env``).
        max_grad: gradients are clamped elementwise to ``[-max_grad, max_grad]`` (the reference's 1).
        log_interval: log every this many batches (the one host sync of the loop, with the NaN check).
        checkpoint_interval: save ``checkpoint.pt`` every this many batches (0: only at the end / on signal).
        evaluate: optional ``callable(method) -> dict`` logged at every log step (e.g. exact payoffs).
        episode_length: rewards per step are reported times this ("return per episode"); 1 for one-step games.
        seed_experiments: with a multi-seed ``method`` (``method.seeds``), one :class:`Experiment` per seed: each
            gets its seed's curves (train rewards, ``evaluate`` of its member, time) on its own env-step axis,
            as a separate run would; ``experiment`` then holds the checkpoint and the cross-seed means (losses
            are logged there only, as means over seeds).

    Several seeds: the losses average over the seeds' samples, so the total is scaled by ``num_seeds`` before
    ``backward``: every seed's slice of the stacked parameters then gets its own run's gradient, and Adam and the
    elementwise clamp act on it as in a separate run. ``total_frames`` and ``frames_per_batch`` count all seeds.
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
        self.iteration, self.frames = 0, 0
        self.wall_time = 0.0
        self._reward_sums: torch.Tensor | None = None  # sender, receiver mean step rewards summed since the last log
        self._reward_batches = 0
        self.checkpoint_path = Path(experiment.run_dir) / "checkpoint.pt"
        self.history: list[dict] = []

    # -- updates -------------------------------------------------------------------------------
    def _apply(self, name: str, loss: torch.Tensor, metrics: dict) -> None:
        opt = self.method.optimizers[name]
        opt.zero_grad(set_to_none=True)
        (loss * self.num_seeds if self.num_seeds > 1 else loss).backward()
        for group in opt.param_groups:
            torch.nn.utils.clip_grad_value_(group["params"], self.max_grad)
        if (self.iteration + 1) % self.log_interval == 0:  # the batch whose state is kept as "last good"
            losses = {k: v for k, v in metrics.items() if "/loss_" in k} or {f"{name}_loss": loss}
            check_finite(losses, self.method.modules())
        opt.step()

    def update_receiver(self, batch: TensorDictBase, metrics: dict) -> None:
        attach_next_message(batch, self.method.scheme)
        out = self.method.receiver_loss(batch)
        self._apply("receiver", _loss_total(out, "receiver", metrics), metrics)

    def update_sender(self, batch: TensorDictBase, metrics: dict) -> None:
        total = 0.0
        for name, loss_module in self.method.sender_losses.items():
            out = loss_module(batch)
            if isinstance(loss_module, ObedienceConstraintLoss):
                loss_module.update_multipliers(out)  # dual ascent on this batch's estimates ("dual" mode only)
            total = total + _loss_total(out, name, metrics)
        self._apply("sender", total, metrics)
        for updater in self.method.target_updaters:
            updater.step()

    def update_dial(self, batch: TensorDictBase, metrics: dict) -> None:
        out = self.method.sender_losses["dial"](batch)
        self._apply("dial", _loss_total(out, "dial", metrics), metrics)
        for updater in self.method.target_updaters:
            updater.step()
        self.method.exploration.step(batch.numel() // self.num_seeds)  # each seed's schedule, in its own env steps

    # -- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "iteration": self.iteration,
            "frames": self.frames,
            "policy": self.method.policy.state_dict(),
            "losses": {k: v.state_dict() for k, v in self.method.modules().items() if k.startswith("loss_")},
            "optimizers": {k: v.state_dict() for k, v in self.method.optimizers.items()},
            "rng": rng_state(self._generators()),
            # the collector's pending inputs (the next batch's first observations) make a resume exact
            "carrier": self._carrier(),
        }

    def _carrier(self):
        """The collector's pending inputs: live during training, the last ones kept after it (the final checkpoint)."""
        collector = getattr(self, "_collector", None)
        if collector is not None:
            return collector._carrier.clone()
        return getattr(self, "_last_carrier", None)

    def _generators(self) -> dict:
        gen = getattr(self.env, "_generator", None)
        return {"env": gen} if isinstance(gen, torch.Generator) else {}

    def load_state_dict(self, state: dict) -> None:
        self.iteration, self.frames = state["iteration"], state["frames"]
        self.method.policy.load_state_dict(state["policy"])
        modules = self.method.modules()
        for k, v in state["losses"].items():
            modules[k].load_state_dict(v)
        for k, v in state["optimizers"].items():
            self.method.optimizers[k].load_state_dict(v)
        # RNG states and the collector's carrier are restored once the collector exists (its start resets
        # the env and may draw random numbers)
        self._pending_restore = state

    def save(self) -> Path:
        return save_checkpoint(self.checkpoint_path, self.state_dict())

    def resume(self, path: str | Path) -> None:
        self.load_state_dict(load_checkpoint(path))

    # -- loop ----------------------------------------------------------------------------------
    def train(self) -> dict:
        """Trains until the budget is spent (or SIGINT/SIGTERM); returns the last logged metrics."""
        remaining = self.total_frames - self.frames
        if remaining <= 0:
            return self.exp.last_metrics
        # The standard scheme + receiver sequence collects through an equivalent fused module (same networks, same
        # keys and random draws, less per-step overhead); any other policy is used as it is.
        policy = fuse_policy(self.method.policy) or self.method.policy
        collector = Collector(
            self.env,
            policy,
            frames_per_batch=self.frames_per_batch,
            total_frames=math.ceil(remaining / self.frames_per_batch) * self.frames_per_batch,  # whole batches
            device=self.device,
            auto_register_policy_transforms=False,  # the policy needs no env transform
        )
        self._collector = collector
        pending = getattr(self, "_pending_restore", None)
        if pending is not None:
            set_rng_state(pending["rng"], self._generators())
            if pending.get("carrier") is not None:
                collector._carrier.update_(pending["carrier"].to(collector._carrier.device))
            self._pending_restore = None
        pbar = self.exp.progress(total=self.total_frames, desc=self.exp.run_name)
        pbar.update(self.frames)
        self._shown = self.frames
        start, last_good = time.perf_counter(), None
        latest: dict = {}  # the newest value of every metric, from both phases
        with GracefulInterrupt() as interrupt:
            try:
                for batch in collector:
                    metrics: dict = {}
                    if self.method.name == "dial":
                        self.update_dial(batch, metrics)
                    elif self.iteration % 2 == 0:
                        self.update_receiver(batch, metrics)
                    else:
                        self.update_sender(batch, metrics)
                    self.frames += batch.numel()
                    self.iteration += 1
                    self._accumulate_rewards(batch)
                    latest.update(metrics)
                    if self.iteration % self.log_interval == 0 or self.frames >= self.total_frames:
                        self._reward_metrics(latest)
                        self._log(latest, start)
                        # a copy (state_dict() holds live tensors): what is saved if a NaN appears later
                        last_good = copy.deepcopy(self.state_dict())
                    if self.checkpoint_interval and self.iteration % self.checkpoint_interval == 0:
                        self.save()
                    if interrupt.requested:
                        self.save()
                        print(f"\n{interrupt.signal_name}: checkpoint saved to {self.checkpoint_path}; "
                              f"resume with resume={self.checkpoint_path}")
                        break
            except NonFiniteError:
                if last_good is not None:
                    save_checkpoint(self.checkpoint_path, last_good)
                raise
            finally:
                self._last_carrier = collector._carrier.clone()  # a checkpoint after train() continues exactly
                collector.shutdown()
                self._collector = None
                self.exp.close_progress()
        self.wall_time = time.perf_counter() - start
        return self.exp.last_metrics

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
        scalars["time/env_steps_per_s"] = self.frames / elapsed
        scalars["time/wall_s"] = elapsed
        self.exp.log(scalars, step=self.frames)
        row = {"frames": self.frames, **{k: float(v) for k, v in self.exp.last_metrics.items()}}
        self.history.append(row)
        live = {k.split("/")[-1]: self.exp.last_metrics[k] for k in self._live_keys() if k in self.exp.last_metrics}
        self.exp.update_progress(self.frames - self._shown, live)
        self._shown = self.frames

    def _log_seeds(self, seed_evals: list[dict] | None, elapsed: float) -> dict:
        """Each seed's own log, on its own env-step axis (``frames / num_seeds``), as a separate run writes it.
        Returns the seeds' reward curves as ``seed<k>/<metric>`` for the run that holds all seeds (W&B)."""
        frames, shared = self.frames // self.num_seeds, {}
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
