"""Figures of one-step runs: the paper's Figure 3 (two mirrored languages) and Figure 8 (honesty sweep)."""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np

from msgzoo.report.compare import find_runs, read_curve, save_figure

#: Figure 3's panels: (curve metric, title). States 0 = weak, 1 = strong; actions 1 = hire.
LANGUAGE_PANELS = [
    ("eval/phi/s0_m1", r"$\varphi(1\mid$W$)$"),
    ("eval/phi/s1_m1", r"$\varphi(1\mid$S$)$"),
    ("eval/pi/m0_a1", r"$\pi($H$\mid 0)$"),
    ("eval/pi/m1_a1", r"$\pi($H$\mid 1)$"),
]


def language(run: dict) -> str:
    """``"A"`` when message 1 means "strong" (phi(1|S) > phi(0|S)) in the final scheme, else ``"B"``."""
    phi = run["scheme"]
    return "A" if phi[1][1] >= phi[1][0] else "B"


def plot_languages(runs: Sequence[dict], path: str | Path) -> dict:
    """Per-seed curves of phi and pi coloured by language (Figure 3). Returns the seeds of each language."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(15, 3.2))
    groups: dict[str, list] = defaultdict(list)
    for run in runs:
        lang = language(run)
        groups[lang].append(run.get("seed"))
        for ax, (metric, title) in zip(axes, LANGUAGE_PANELS):
            curve = read_curve(run["run_dir"], metric)
            if curve is not None:
                ax.plot(*curve, color="#d62728" if lang == "A" else "#1f77b4", lw=0.8, alpha=0.8)
            ax.set_title(title)
            ax.set_ylim(-0.03, 1.03)
            ax.set_xlabel("students")
    for lang, color in (("A", "#d62728"), ("B", "#1f77b4")):
        axes[0].plot([], [], color=color, label=f"{lang} seeds ({len(groups[lang])})")
    axes[0].legend(fontsize=8)
    save_figure(fig, path)
    return {k: sorted(v) for k, v in groups.items()}


def honesty_grid(runs: Sequence[dict]) -> tuple[list[float], list[float], np.ndarray]:
    """Mean honesty over seeds for every (epsilon, lambda) of a sweep: ``(epsilons, lambdas, grid)``."""
    cells: dict[tuple[float, float], list[float]] = defaultdict(list)
    for run in runs:
        cfg = json.loads((Path(run["run_dir"]) / "config.json").read_text())
        cells[(float(cfg["loss"]["epsilon"]), float(cfg["loss"]["lagrange_multiplier"]))].append(run["honesty"])
    eps = sorted({e for e, _ in cells})
    lams = sorted({lam for _, lam in cells})
    grid = np.full((len(eps), len(lams)), np.nan)
    for (e, lam), values in cells.items():
        grid[eps.index(e), lams.index(lam)] = float(np.mean(values))
    return eps, lams, grid


def plot_honesty_heatmap(runs: Sequence[dict], path: str | Path) -> Path:
    """The paper's Figure 8: honesty |phi(1|S) - phi(1|W)| over epsilon x lambda."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    eps, lams, grid = honesty_grid(runs)
    fig, ax = plt.subplots(figsize=(1 + 0.8 * len(lams), 1 + 0.7 * len(eps)))
    im = ax.imshow(grid, origin="lower", cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(lams)), [f"{v:g}" for v in lams])
    ax.set_yticks(range(len(eps)), [f"{v:g}" for v in eps])
    ax.set_xlabel(r"$\lambda$")
    ax.set_ylabel(r"$\epsilon$")
    for i in range(len(eps)):
        for j in range(len(lams)):
            if np.isfinite(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if grid[i, j] < 0.6 else "black")
    fig.colorbar(im, ax=ax, label="honesty")
    ax.set_title("SGOC honesty over epsilon x lambda")
    return save_figure(fig, path)


try:  # the sweep draws its heatmap when the multirun ends (a Hydra callback)
    from hydra.experimental.callback import Callback
except ImportError:  # pragma: no cover
    Callback = object


class HonestyHeatmap(Callback):
    """Hydra callback: at the end of a multirun, draw the honesty heatmap of its runs."""

    def __init__(self, output: str):
        self.output = output

    def on_multirun_end(self, config, **kwargs) -> None:
        runs = find_runs([config.hydra.sweep.dir])
        path = plot_honesty_heatmap(runs, self.output)
        print(f"honesty heatmap: {Path(path).resolve()}")
