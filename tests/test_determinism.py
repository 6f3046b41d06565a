"""Same seed and config, same results on CPU; another seed, other results."""
from __future__ import annotations

from recipes import run_recipe as run

TINY = ["collector.total_frames=20480", "env.num_envs=1024", "logger.backends=[csv]", "logger.log_interval=5"]
TIMING = {"wall_time_s", "env_steps_per_s", "wall_time_to_target_s", "run_dir", "summary_path", "history", "last_metrics"}


def _metrics(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in TIMING}


def _run(recipe_config, tmp_path, name, *extra):
    cfg = recipe_config("sgoc_recommendation_letter", *TINY, f"+run_dir={tmp_path / name}", *extra)
    return run(cfg, method="sgoc")


def test_same_seed_same_summary(recipe_config, tmp_path):
    first = _run(recipe_config, tmp_path, "a", "seed=7")
    second = _run(recipe_config, tmp_path, "b", "seed=7")
    assert _metrics(first) == _metrics(second)
    curve = lambda s: [{k: v for k, v in row.items() if not k.startswith("time/")} for row in s["history"]]
    assert curve(first) == curve(second)


def test_other_seed_other_run(recipe_config, tmp_path):
    first = _run(recipe_config, tmp_path, "a", "seed=7")
    other = _run(recipe_config, tmp_path, "c", "seed=8")
    assert first["scheme"] != other["scheme"]
