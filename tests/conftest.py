"""Shared fixtures: compose a recipe's Hydra config in-process (no subprocess start-up per test)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "recipes"


@pytest.fixture(autouse=True, scope="session")
def _subprocesses_import_this_checkout():
    """Recipes started as subprocesses import this checkout's msgzoo, not another installed copy."""
    import os

    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), before) if p)
    yield
    if before is None:
        del os.environ["PYTHONPATH"]
    else:
        os.environ["PYTHONPATH"] = before


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Tiny networks: one intra-op thread is several times faster than many on a shared machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def recipe_config():
    """``recipe_config(name, *overrides) -> DictConfig`` for ``recipes/config/<name>.yaml``."""

    def make(name: str, *overrides: str):
        with initialize_config_dir(config_dir=str(RECIPES / "config"), version_base="1.3"):
            return compose(config_name=name, overrides=list(overrides))

    return make


def run_recipe(script: str, *overrides: str, cwd: Path, timeout: int = 300):
    """Runs ``recipes/<script>`` as a user would; returns the completed process."""
    import subprocess

    return subprocess.run(
        [sys.executable, str(RECIPES / script), *overrides],
        cwd=cwd, capture_output=True, text=True, timeout=timeout,
    )
