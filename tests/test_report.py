"""The comparison report on real (tiny) runs: a table and a valid Figure-2-style image."""
from __future__ import annotations

import json
import subprocess
import sys

from PIL import Image

from recipes import run_recipe as run

TINY = ["collector.total_frames=8192", "env.num_envs=512", "logger.backends=[csv]", "logger.log_interval=2"]


def test_report_command_on_two_tiny_runs(recipe_config, tmp_path):
    for method, seed in (("sgoc", 0), ("pg", 1)):
        cfg = recipe_config(f"{method}_recommendation_letter", *TINY, f"seed={seed}", f"+run_dir={tmp_path / 'runs' / method}")
        run(cfg, method=method)
    out = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "msgzoo.report", str(tmp_path / "runs"), "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    figure = out / "comparison.png"
    assert figure.exists()
    with Image.open(figure) as img:
        img.verify()  # a valid PNG, not just a file
    with Image.open(figure) as img:
        assert img.format == "PNG" and img.size[0] > 500 and img.size[1] > 200
    rows = json.loads((out / "table.json").read_text())
    assert {r["method"] for r in rows} == {"sgoc", "pg"}
    assert all(r["seeds"] == 1 and "sender_reward" in r for r in rows)
    assert "| recommendation_letter | sgoc | 1 |" in (out / "table.md").read_text()


def test_report_refuses_an_empty_folder(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "msgzoo.report", str(tmp_path), "--out", str(tmp_path / "r")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode != 0 and "no summary.json" in proc.stderr
