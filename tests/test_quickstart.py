"""The README's quick start, run as written (with a tiny budget appended), and its figures."""
from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
TINY = ["collector.total_episodes=40", "env.num_envs=8", "eval.episodes=8", "logger.backends=[csv]"]


def readme_block(heading: str) -> list[str]:
    """The shell commands of the first ```bash block under ``heading`` in README.md."""
    text = (ROOT / "README.md").read_text()
    section = text.split(heading, 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line.strip() for line in block.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_readme_gives_the_two_commands():
    main_job = readme_block("Install and run the main job")
    tests = readme_block("Run the tests")
    assert main_job == ["pip install -e . && python recipes/sgoc_reaching_goals.py"]
    assert "pytest" in tests[0]
    assert "python -m pytest" in (ROOT / ".ci" / "run").read_text()  # CI runs the README's test command


def test_quickstart_main_job_runs_as_written(tmp_path):
    command = readme_block("Install and run the main job")[0]
    # the install half already ran (CI installs the package); run the main job itself as written
    job = shlex.split(command.split("&&")[-1].strip())
    assert job[0] == "python"
    proc = subprocess.run(
        [sys.executable, *job[1:], *TINY, f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    summary_path = Path(lines[-1].removeprefix("summary: "))
    summary = json.loads(summary_path.read_text())
    assert summary["method"] == "sgoc" and summary["task"].startswith("reaching_goals")
    # the figures it announces exist and are images a person can open
    figures = [Path(p) for p in re.findall(r"(/\S+\.(?:png|gif))", proc.stdout)]
    assert any(p.suffix == ".gif" for p in figures) and sum(p.suffix == ".png" for p in figures) >= 2
    for path in figures:
        with Image.open(path) as img:
            img.verify()
