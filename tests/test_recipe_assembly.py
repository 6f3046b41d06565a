"""The recipes hold the methods: each assembles its parts in the open, the two recipes of a method assemble it the
same way, and the loop they write out is the trainer's."""
from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest
from torchrl.collectors import Collector
from torchrl.objectives import A2CLoss

from msgzoo.objectives import DIALLoss, ObedienceConstraintLoss, SarsaPolicyGradientLoss, SignalingGradientLoss
from msgzoo.pipelines import one_step
from msgzoo.training.config_schema import ConfigError
from msgzoo.runtime.experiment import Experiment, start_run
from msgzoo.training.methods import METHODS
from recipes import TASKS, build_method, recipe

RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def _function(module, name: str) -> str:
    """``name``'s code in ``module`` without its position (an AST dump)."""
    return ast.dump(ast.parse(inspect.getsource(getattr(module, name))))


@pytest.mark.parametrize("method", METHODS)
def test_both_recipes_of_a_method_assemble_it_the_same_way(method):
    """The one-step and Reaching Goals recipes repeat the method's assembly (as TorchRL's scripts repeat theirs):
    the two copies must stay equal, and the loops of the two tasks too."""
    one, grid = (recipe(method, task) for task in TASKS)
    assert _function(one, "make_method") == _function(grid, "make_method")
    loop = [ast.dump(n) for n in ast.walk(ast.parse(inspect.getsource(one.train))) if isinstance(n, ast.With)]
    assert loop == [ast.dump(n) for n in ast.walk(ast.parse(inspect.getsource(grid.train))) if isinstance(n, ast.With)]


@pytest.mark.parametrize("path", sorted(RECIPES.glob("*_*.py")), ids=lambda p: p.stem)
def test_recipes_stay_short(path):
    assert len(path.read_text().splitlines()) < 200


@pytest.mark.parametrize("method, sender, receiver", [
    ("sgoc", {"signaling": SignalingGradientLoss, "obedience": ObedienceConstraintLoss}, A2CLoss),
    ("sg", {"signaling": SignalingGradientLoss}, A2CLoss),
    ("pgoc", {"policy_gradient": A2CLoss, "obedience": ObedienceConstraintLoss}, A2CLoss),
    ("pg", {"policy_gradient": A2CLoss}, A2CLoss),
    ("dial", {"dial": DIALLoss}, type(None)),
])
def test_a_recipe_builds_its_methods_losses(recipe_config, method, sender, receiver):
    cfg = recipe_config(f"{method}_recommendation_letter", "env.num_envs=8")
    built = build_method(method, one_step.make_env(cfg), cfg)
    assert set(built.sender_losses) == set(sender)
    assert all(isinstance(built.sender_losses[k], kind) for k, kind in sender.items())
    assert isinstance(built.receiver_loss, receiver)
    # the receiver's phase, then the sender's (DIAL: one joint phase)
    assert [p.name for p in built.phases] == (["dial"] if method == "dial" else ["receiver", "sender"])


def test_the_authors_pg_critic_is_a_recipe_option(recipe_config):
    cfg = recipe_config("pg_recommendation_letter", "env.num_envs=8", "loss.pg_critic=sarsa_q")
    built = build_method("pg", one_step.make_env(cfg), cfg)
    assert isinstance(built.sender_losses["policy_gradient"], SarsaPolicyGradientLoss)
    assert len(built.target_updaters) == 1  # its Q(s, sigma) learns from a target copy


def test_the_recipes_loop_runs_on_torchrls_collector(recipe_config, tmp_path):
    """The loop a recipe writes out: ``collecting()`` yields TorchRL's Collector, one phase per batch in turn."""
    cfg = recipe_config("sgoc_recommendation_letter", "env.num_envs=16", "collector.total_frames=64",
                        "logger.backends=[csv]", f"+run_dir={tmp_path}")
    env = one_step.make_env(cfg)
    method = recipe("sgoc", "recommendation_letter").make_method(env, cfg)
    with Experiment.from_config(cfg, "sgoc") as exp:
        trainer = one_step.make_trainer(cfg, env, method, exp)
        names = []
        with trainer.collecting() as collector:
            assert isinstance(collector, Collector)
            for batch in collector:
                phase = method.phases[trainer.iteration % len(method.phases)]
                names.append(phase.name)
                trainer.update_phase(phase, batch)
                assert not trainer.end_of_batch(batch)
    assert names == ["receiver", "sender", "receiver", "sender"] and trainer.frames == 64
    assert trainer.history and trainer.history[-1]["frames"] == 64  # logged at the budget's end


def test_a_recipe_refuses_another_methods_config(recipe_config):
    cfg = recipe_config("pg_recommendation_letter")
    with pytest.raises(ConfigError, match="method='pg' is invalid: expected 'sgoc', the method this recipe trains"):
        start_run(cfg, "sgoc")


def test_an_unknown_method_or_task_names_the_known_ones():
    with pytest.raises(ValueError, match="method='ppo' has no recipe"):
        recipe("ppo", "reaching_goals")
    with pytest.raises(ValueError, match="task='atari' is invalid"):
        recipe("sgoc", "atari")
