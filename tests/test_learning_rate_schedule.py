"""``optim.lr_final_fraction``: every learning rate from the warm-up's end to a fraction of it at the budget's end."""
from __future__ import annotations

import pytest

from msgzoo.pipelines.one_step import make_env
from msgzoo.runtime.experiment import Experiment
from msgzoo.training.methods import LinearSchedule, learning_rate_schedule_from_config
from msgzoo.training.trainer import Trainer
from recipes import build_method

RECIPE = "sgoc_recommendation_letter"


def test_the_schedule_runs_from_the_warmups_end_to_the_budgets_end(recipe_config):
    cfg = recipe_config(RECIPE, "optim.lr_final_fraction=0.1", "warmup.frames=1000", "collector.total_frames=5000")
    assert learning_rate_schedule_from_config(cfg) == LinearSchedule(1.0, 0.1, 5000, begin=1000)
    assert learning_rate_schedule_from_config(recipe_config(RECIPE)) is None  # null: constant rates
    assert learning_rate_schedule_from_config(recipe_config(RECIPE, "optim.lr_final_fraction=1")) is None


@pytest.mark.parametrize("method", ["sgoc", "dial"])
def test_every_step_uses_the_configs_rates_times_the_factor(recipe_config, tmp_path, method):
    num_envs, batches = 64, 40
    cfg = recipe_config(f"{method}_recommendation_letter", f"env.num_envs={num_envs}", "logger.backends=[csv]",
                        f"warmup.frames={10 * num_envs}", f"collector.total_frames={batches * num_envs}",
                        "optim.lr_final_fraction=0.25")
    env = make_env(cfg)
    agents = build_method(method, env, cfg)
    exp = Experiment(method=method, task="t", seed=0, config=cfg, run_dir=str(tmp_path), backends=("csv",))
    schedule = learning_rate_schedule_from_config(cfg)
    trainer = Trainer(env, agents, exp, total_frames=batches * num_envs, frames_per_batch=num_envs,
                      learning_rate_schedule=schedule)
    base = {k: [g["lr"] for g in opt.param_groups] for k, opt in agents.optimizers.items()}
    steps = []  # (optimizer, the seed's env steps, its rates) at every step

    def record(name, opt):
        step = opt.step

        def recorded(*args, **kwargs):
            steps.append((name, trainer.frames, [g["lr"] for g in opt.param_groups]))
            return step(*args, **kwargs)

        opt.step = recorded

    for name, opt in agents.optimizers.items():
        record(name, opt)
    trainer.train()
    exp.close()
    assert {name for name, _, _ in steps} == set(base)
    for name, frames, rates in steps:
        assert rates == pytest.approx([b * schedule.value(frames) for b in base[name]])
    factors = [rates[0] / base[name][0] for name, _, rates in steps]
    assert factors[0] == 1.0 and min(factors) < 0.3  # the config's rates first, near a quarter of them at the end
