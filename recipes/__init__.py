"""The recipes as modules, for what runs them outside their command line (the persuasion suite, the benchmarks,
scripts and tests): each ``recipes/<method>_<task>.py`` holds ``make_method`` (the method's assembly: networks,
losses, optimizers, update phases) and ``train(cfg)`` (the run), the one source of both."""
from __future__ import annotations

import importlib
from types import ModuleType

#: The tasks with a recipe per method: the one-step (and Markov) persuasion games, Reaching Goals.
TASKS = ("recommendation_letter", "reaching_goals")


def recipe(method: str, task: str) -> ModuleType:
    """The module of ``recipes/<method>_<task>.py`` (``task`` one of :data:`TASKS`)."""
    if task not in TASKS:
        raise ValueError(f"task={task!r} is invalid: expected one of {TASKS}.")
    try:
        return importlib.import_module(f"recipes.{method}_{task}")
    except ModuleNotFoundError as err:
        if err.name != f"recipes.{method}_{task}":
            raise
        from msgzoo.training.methods import METHODS

        raise ValueError(f"method={method!r} has no recipe for {task}: expected one of {METHODS}.") from None


def config_task(cfg) -> str:
    """The recipe task of a composed config: ``reaching_goals``, else the persuasion games' (whose ``task`` is the
    game's name)."""
    return "reaching_goals" if cfg.task == "reaching_goals" else "recommendation_letter"


def build_method(method: str, env, cfg, *, device="cpu", seeds=None):
    """``method`` assembled for ``env`` by its recipe for ``cfg``'s task (:func:`config_task`)."""
    return recipe(method, config_task(cfg)).make_method(env, cfg, seeds=seeds, device=device)


def run_recipe(cfg, method: str | None = None) -> dict:
    """Runs the recipe of ``method`` (default ``cfg.method``) for ``cfg``'s task on ``cfg``, as its command line
    would; returns its summary."""
    return recipe(method or cfg.method, config_task(cfg)).train(cfg)
