"""The epsilon x lambda honesty sweep is a Hydra multirun that ends by drawing its heatmap."""
from __future__ import annotations

import json

from PIL import Image

from conftest import run_recipe


def test_honesty_sweep_draws_heatmap(tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = run_recipe(
        "sgoc_recommendation_letter.py", "-m", "+sweep=honesty",
        "loss.epsilon=0,0.3", "loss.lagrange_multiplier=0,5",  # a 2 x 2 corner of the paper's grid
        "collector.total_frames=2048", "env.num_envs=512", f"hydra.sweep.dir={sweep_dir}",
        cwd=tmp_path, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = sorted(sweep_dir.rglob("summary.json"))
    assert len(runs) == 4
    cells = {(json.loads((p.parent / "config.json").read_text())["loss"]["epsilon"],
              json.loads((p.parent / "config.json").read_text())["loss"]["lagrange_multiplier"]) for p in runs}
    assert cells == {(0, 0), (0, 5), (0.3, 0), (0.3, 5)}
    heatmap = sweep_dir / "honesty_heatmap.png"
    assert heatmap.exists() and f"honesty heatmap: {heatmap}" in proc.stdout
    with Image.open(heatmap) as img:
        img.verify()
