"""Cost of the trainer's per-update non-finite flag (``msgzoo.training.trainer.Trainer._apply``), one CPU thread.

Every update the trainer ANDs "loss, gradients and updated parameters are finite" into a flag on the device and
reads it only at log and checkpoint time (docs/reliability.md). This times those flag operations alone on each
optimizer's parameters of SGOC, the recipe's default networks::

    python benchmarks/nonfinite_check_cost.py [sgoc_recommendation_letter | sgoc_reaching_goals]
"""
from __future__ import annotations

import importlib
import sys
import timeit
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from msgzoo.training.trainer import _all_finite

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "recipes" / "config"
sys.path.insert(0, str(ROOT))
from recipes import build_method  # noqa: E402  (the recipes' make_method, the methods' one source)


def main(recipe: str = "sgoc_reaching_goals") -> None:
    torch.set_num_threads(1)
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name=recipe, overrides=["logger.backends=[csv]"])
    pipeline = importlib.import_module("msgzoo.pipelines." + ("reaching_goals" if "reaching" in recipe else "one_step"))
    method = build_method(cfg.method, pipeline.make_env(cfg), cfg)
    for name, opt in method.optimizers.items():
        params = [p for group in opt.param_groups for p in group["params"]]
        for p in params:
            p.grad = torch.zeros_like(p)
        loss, first_bad = torch.tensor(1.0), torch.tensor(-1)

        def flag():
            ok = torch.isfinite(loss).all() & _all_finite([p.grad for p in params]) & _all_finite(params)
            return torch.where(~ok & (first_bad < 0), 3, first_bad)

        per_call = min(timeit.repeat(flag, number=2000, repeat=5)) / 2000
        print(f"{recipe} {name}: {len(params)} tensors, {sum(p.numel() for p in params)} values: "
              f"{per_call * 1e6:.0f} us per update")


if __name__ == "__main__":
    main(*sys.argv[1:])
