"""scripts/sender_loss_gradients.py reads a finished one-step run and prints each sender loss's gradient tables."""
from __future__ import annotations

import importlib.util

import pytest

from conftest import ROOT
from recipes import run_recipe as run


def _script():
    spec = importlib.util.spec_from_file_location("sender_loss_gradients", ROOT / "scripts" / "sender_loss_gradients.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_prints_phi_and_each_losss_gradient_and_leaves_the_run_as_it_was(recipe_config, tmp_path, capsys):
    folder = tmp_path / "run"
    run(recipe_config("sgoc_recommendation_letter", "collector.total_frames=2048", "env.num_envs=256", "num_seeds=2",
                      "logger.backends=[csv]", f"+run_dir={folder}"), method="sgoc")
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    _script().main([str(folder), "--batches", "2", "--seed-index", "1"])
    out = capsys.readouterr().out
    for title in ("phi(m | s)", "signaling: mean gradient", "obedience: mean gradient", "obedience: its standard"):
        assert title in out
    assert "seed index 1" in out and "s1 " in out
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before  # nothing written into the run


def test_a_folder_without_a_run_fails_naming_what_it_needs(tmp_path):
    with pytest.raises(SystemExit, match="config.yaml does not exist"):
        _script().main([str(tmp_path)])
