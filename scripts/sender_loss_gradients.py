"""Which sender loss pushes a one-step scheme where: each loss's mean gradient on the scheme's logits at a checkpoint.

    python scripts/sender_loss_gradients.py <run folder> [--batches 20] [--seed-index 0]

The run folder is a one-step SGOC or PGOC run's (its ``config.yaml`` and ``checkpoint.pt``; a suite run's folders are
``<run-root>/<method>/<game>/``). The method is rebuilt from the config and the checkpoint, ``--batches`` fresh
batches are collected with its policy, the sender phase's schedules are applied at the checkpoint's env steps, and
for each of that phase's losses the gradient of its ``loss_*`` terms (critic losses left out) on the scheme's
parameters is averaged over the batches. For the recipes' scheme (a bias-free linear map of the one-hot state, one
logit per message and state) it prints, for one seed, ``phi(m | s)`` and each loss's mean gradient (and its spread over
the batches) as state x message tables: a gradient step moves each logit against its entry.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _table(title: str, rows: torch.Tensor) -> str:
    """``rows[s, m]`` as a state x message table."""
    lines = [title, "state " + " ".join(f"{f'm{m}':>11}" for m in range(rows.shape[1]))]
    lines += [f"s{s:<4} " + " ".join(f"{float(v):11.3e}" for v in row) for s, row in enumerate(rows)]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a one-step run folder with config.yaml and checkpoint.pt")
    parser.add_argument("--batches", type=int, default=20, help="fresh batches the gradients are averaged over")
    parser.add_argument("--seed-index", type=int, default=0, help="which of the run's seeds to print (0-based)")
    args = parser.parse_args(argv)
    from msgzoo.pipelines.one_step import make_env
    from msgzoo.runtime.experiment import Experiment
    from msgzoo.training.trainer import Trainer
    from recipes import build_method

    for name in ("config.yaml", "checkpoint.pt"):
        if not (args.run / name).exists():
            raise SystemExit(f"{args.run / name} does not exist: pass the folder of a one-step run (its config.yaml "
                             "and checkpoint.pt).")
    torch.set_num_threads(1)
    cfg = OmegaConf.load(args.run / "config.yaml")
    method = cfg.get("method", "sgoc")
    if method not in ("sgoc", "pgoc"):
        raise SystemExit(f"method={method!r}: only SGOC and PGOC runs have a sender phase with a scheme to read.")
    cfg.resume = str(args.run / "checkpoint.pt")
    num_seeds = int(cfg.num_seeds)
    if not 0 <= args.seed_index < num_seeds:
        raise SystemExit(f"--seed-index={args.seed_index} is out of range: the run has {num_seeds} seed(s).")
    env = make_env(cfg, num_seeds=num_seeds)
    agents = build_method(method, env, cfg, seeds=list(range(num_seeds)) if num_seeds > 1 else None)
    with tempfile.TemporaryDirectory() as tmp:  # the run folder is only read
        exp = Experiment(method=method, task="gradients", seed=int(cfg.seed), config=cfg, run_dir=tmp,
                         backends=("csv",), num_seeds=num_seeds)
        trainer = Trainer.from_config(cfg, env, agents, exp, frames_per_batch=env.batch_size[-1])
        exp.close()
    phase = next(p for p in agents.phases if p.name == "sender")
    params = list(agents.scheme.parameters())
    grads_by_loss: dict[str, list[torch.Tensor]] = {}  # each loss's gradient on the scheme, one per batch
    torch.manual_seed(0)
    for _ in range(args.batches):
        batch = env.rollout(1, agents.policy, break_when_any_done=False)
        if phase.prepare is not None:
            phase.prepare(batch, trainer.frames)
        for name, loss in phase.losses.items():
            out = loss(batch.clone())
            total = sum(v for k, v in out.items() if k.startswith("loss_") and k != "loss_critic")
            grads = torch.autograd.grad(total, params, allow_unused=True)
            if grads[0] is not None:
                grads_by_loss.setdefault(name, []).append(grads[0].detach())
    weight = params[0].detach()
    weight = weight[args.seed_index] if num_seeds > 1 else weight  # [messages, states]
    print(f"{args.run}: {method}, {trainer.frames:,} env steps per seed, seed index {args.seed_index}, "
          f"{args.batches} batches of {env.batch_size[-1]}")
    print(_table("phi(m | s)", torch.softmax(weight, 0).T))
    for name, grads in grads_by_loss.items():
        g = torch.stack(grads)
        g = g[:, args.seed_index] if num_seeds > 1 else g
        print(_table(f"{name}: mean gradient on the logit of m in s", g.mean(0).T))
        print(_table(f"{name}: its standard deviation over the batches", g.std(0).T))


if __name__ == "__main__":
    main()
