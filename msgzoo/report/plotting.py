"""Figures of a training run: learning curves, the learned signaling scheme, an animated episode.

Used by the Reaching Goals pipeline (``figures=true``); every function also works on its own::

    from msgzoo.report.plotting import plot_learning_curves, plot_scheme_heatmaps, save_episode_gif
    plot_learning_curves(trainer.history, "curves.png", horizon=50)
    plot_scheme_heatmaps(method, env, "scheme.png")
    save_episode_gif(method, env, "episode.gif")
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tensordict import TensorDictBase
from torchrl.envs.utils import ExplorationType, set_exploration_type

from msgzoo.envs.rendering import plot_signaling_scheme, render_frame

__all__ = [
    "plot_learning_curves",
    "plot_scheme_heatmaps",
    "reaching_goals_figures",
    "reaching_goals_optimum_value",
    "save_episode_gif",
    "scheme_distribution",
]

CURVES = (
    ("train/sender_reward", "sender $r^i$", "tab:red"),
    ("train/receiver_reward", "receiver $r^j$", "tab:green"),
    (None, "welfare $r^i + r^j$", "tab:blue"),
)


def _matplotlib():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average (the first points average what there is)."""
    if window <= 1 or values.size == 0:
        return values
    c = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, values.size + 1)
    lo = np.maximum(idx - window, 0)
    return (c[idx] - c[lo]) / (idx - lo)


def plot_learning_curves(
    history: Sequence[dict],
    path: str | Path,
    *,
    horizon: int = 50,
    title: str | None = None,
    smooth: int | None = None,
    final: dict | None = None,
    method: str | None = None,
    map_name: str | None = None,
    optimum: float | None = None,
) -> Path:
    """Sender, receiver and welfare returns per episode vs episodes, from a :class:`~msgzoo.training.trainer.Trainer`'s
    ``history`` (rows with ``frames``, ``train/sender_reward``, ``train/receiver_reward``, the latter already per
    episode). Raw values are drawn faintly, a moving average (``smooth`` points, default ~2% of the run) on top;
    ``final`` (e.g. ``{"sender_return": ..., "receiver_return": ...}``) adds the final evaluation as markers.

    With ``method`` and ``map_name`` (``"3x3"``, ``"5x5"``) a second panel draws the same curves in the paper's
    units (:mod:`msgzoo.report.paper_units`: ``k``-episode sums against real episodes / ``k``, ``k = 2``, DIAL 1)
    and both panels mark the paper's Figure 2 values for that method (stars). ``optimum`` (the sender's optimal
    return per episode, :mod:`msgzoo.game_theory.optimal_scheme_markov`) is drawn as a dashed line, in each panel's
    units."""
    plt = _matplotlib()
    rows = [r for r in history if "train/sender_reward" in r and "train/receiver_reward" in r]
    episodes = np.array([r["frames"] / horizon for r in rows], dtype=np.float64)
    sender = np.array([r["train/sender_reward"] for r in rows], dtype=np.float64)
    receiver = np.array([r["train/receiver_reward"] for r in rows], dtype=np.float64)
    series = {CURVES[0][0]: sender, CURVES[1][0]: receiver, None: sender + receiver}
    window = smooth if smooth is not None else max(1, len(rows) // 50)
    paper = method is not None and map_name is not None
    fig, axes = plt.subplots(1, 2 if paper else 1, figsize=(12.4 if paper else 6.4, 4.0), squeeze=False)
    ax = axes[0, 0]
    for key, label, color in CURVES:
        y = series[key]
        if y.size:
            ax.plot(episodes, y, color=color, alpha=0.2, lw=0.8)
            ax.plot(episodes, _smooth(y, window), color=color, lw=2.0, label=label)
    if final is not None and episodes.size:
        x = episodes[-1]
        s, r = final.get("sender_return"), final.get("receiver_return")
        for value, color in ((s, "tab:red"), (r, "tab:green"), (None if s is None or r is None else s + r, "tab:blue")):
            if value is not None:
                ax.plot([x], [value], marker="D", color=color, ms=7, mec="black", zorder=5)
        ax.plot([], [], ls="", marker="D", color="gray", mec="black", label="final evaluation")
    ax.set_xlabel("episode")
    ax.set_ylabel("return per episode")
    if paper:
        _paper_panel(axes[0, 1], episodes, series, window, method, map_name, optimum)
        _paper_marks(ax, method, map_name, optimum, per_episode=True)
    elif optimum is not None:
        ax.axhline(optimum, color="black", ls="--", lw=1.2, label="sender optimum (LP)")
    for ax in axes[0]:
        ax.axhline(0.0, color="gray", lw=0.6)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    if title:
        fig.suptitle(title) if paper else axes[0, 0].set_title(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _paper_marks(ax, method: str, map_name: str, optimum: float | None, *, per_episode: bool) -> None:
    """The paper's Figure 2 values for ``method`` (stars) and the sender's optimum (dashed), in the axis' units."""
    from msgzoo.report.paper_units import paper_points, to_paper_units

    for point in paper_points(map_name, method):
        for value, color in ((point.sender, "tab:red"), (point.receiver, "tab:green"), (point.welfare, "tab:blue")):
            if value is not None:
                x, y = (point.real_episodes, value) if per_episode else to_paper_units(
                    point.real_episodes, value, method)
                ax.plot([x], [y], marker="*", color=color, ms=13, mec="black", zorder=6)
    ax.plot([], [], ls="", marker="*", color="gray", mec="black", ms=10, label="paper (Figure 2, read by eye)")
    if optimum is not None:
        y = optimum if per_episode else float(to_paper_units(0.0, optimum, method)[1])
        ax.axhline(y, color="black", ls="--", lw=1.2, label="sender optimum (LP, myopic obedient receiver)")


def _paper_panel(ax, episodes, series, window, method, map_name, optimum) -> None:
    """The curves in the paper's units: k-episode sums against real episodes / k."""
    from msgzoo.report.paper_units import episodes_per_point, to_paper_units

    for key, label, color in CURVES:
        y = series[key]
        if y.size:
            x, y = to_paper_units(episodes, _smooth(y, window), method)
            ax.plot(x, y, color=color, lw=2.0, label=label)
    _paper_marks(ax, method, map_name, optimum, per_episode=False)
    k = episodes_per_point(method)
    ax.set_xlabel(f"paper's x: episodes / {k}" if k > 1 else "paper's x: episodes")
    ax.set_ylabel(f"paper's y: return summed over {k} episodes" if k > 1 else "paper's y: return per episode")
    ax.set_title("in the paper's units (Figure 2)", fontsize=10)


def scheme_distribution(method, tensordict: TensorDictBase) -> tuple[torch.Tensor, str]:
    """What the sender sends on ``tensordict``'s states, one row per state, as the method's readout gives it
    (:meth:`~msgzoo.training.evaluation.PolicyReadout.message_distribution`: ``phi(. | s)`` for a signaling scheme, the
    noise-free DRU output for DIAL). Returns the ``[N, num_messages]`` tensor and a label."""
    return method.readout.message_distribution(method, tensordict)


def plot_scheme_heatmaps(method, env, path: str | Path, *, num_states: int = 4, seed: int = 0) -> Path:
    """The learned signaling scheme on ``num_states`` states drawn by ``env.reset()`` (Reaching Goals): one
    heatmap over the grid per state, with the receiver (blue circle) and the apples (red: sender's, green:
    receiver's) marked (:func:`msgzoo.envs.rendering.plot_signaling_scheme`)."""
    plt = _matplotlib()
    env.set_seed(seed)
    td = env.reset()
    n = min(num_states, td.batch_size[0])
    probs, label = scheme_distribution(method, td[:n])
    states = td.get(("sender", "state"))[:n]
    fig, axes = plt.subplots(1, n, figsize=(3.3 * n, 3.2), squeeze=False)
    for i in range(n):
        plot_signaling_scheme(probs[i], env.height, env.width, ax=axes[0, i], state=states[i], title=f"state {i}")
    fig.suptitle(f"{method.name}: {label}  (circle: receiver, red: sender's apple, green: receiver's apple)",
                 fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _caption(frame: np.ndarray, text: str) -> np.ndarray:
    """``frame`` with a white strip of ``text`` on top (PIL's default font)."""
    from PIL import Image, ImageDraw

    strip = 30
    img = Image.new("RGB", (frame.shape[1], frame.shape[0] + strip), (255, 255, 255))
    img.paste(Image.fromarray(frame), (0, strip))
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(text.split("\n")[:2]):
        draw.text((3, 2 + 13 * i), line, fill=(0, 0, 0))
    return np.asarray(img)


@torch.no_grad()
def save_episode_gif(
    method, env, path: str | Path, *, index: int = 0, cell_px: int = 64, fps: int = 4, deterministic: bool = False,
    seed: int = 0,
) -> Path:
    """An animated GIF of one full episode (environment ``index`` of ``env``) under the trained policies.

    Each frame shows the state before the step (receiver: blue disc; red / green apples) and the message sent in
    it (yellow frame: the "fake apple"), with the step and both agents' returns so far."""
    import imageio.v2 as imageio

    env.set_seed(seed)
    kind = ExplorationType.DETERMINISTIC if deterministic else ExplorationType.RANDOM
    with set_exploration_type(kind):
        rollout = env.rollout(env.horizon, method.policy, break_when_any_done=False)
    traj = rollout[index]
    states = traj.get(("sender", "state"))
    messages = traj.get(("sender", "message"))
    r_s = traj.get(("next", "sender", "reward")).reshape(-1).cumsum(0)
    r_r = traj.get(("next", "receiver", "reward")).reshape(-1).cumsum(0)
    frames = []
    for t in range(states.shape[0]):
        img = render_frame(states[t], env.height, env.width, message_cell=int(messages[t].argmax()), cell_px=cell_px)
        text = f"{method.name}  t={t + 1}/{states.shape[0]}\nsender {float(r_s[t]):.0f}  receiver {float(r_r[t]):.0f}"
        frames.append(_caption(img, text))
    path = Path(path)
    imageio.mimsave(path, frames, duration=1.0 / fps, loop=0)
    return path


def reaching_goals_optimum_value(env) -> float | None:
    """The sender's optimal return per episode on ``env``'s game (:func:`msgzoo.game_theory.optimal_scheme_markov.
    optimal_markov_scheme`), where it solves in seconds: 3x3 maps, or a receiver that sees the message only or its
    goal; ``None`` otherwise (5x5 with the receiver's position: minutes, see scripts/markov_optimum.py)."""
    from msgzoo.game_theory.optimal_scheme_markov import optimal_markov_scheme, reaching_goals_game_of

    if env.num_cells > 9 and env.receiver_observes not in ((), ("position", "goal")):
        return None
    return optimal_markov_scheme(reaching_goals_game_of(env)).sender_value


def reaching_goals_figures(
    run_dir: str | Path, history: Sequence[dict], method, env, *, horizon: int = 50, seed: int = 0,
    final: dict | None = None,
) -> dict[str, Path]:
    """Writes ``learning_curves.png``, ``signaling_scheme.png`` and ``episode.gif`` into ``run_dir/figures``;
    returns their paths by name."""
    out = Path(run_dir) / "figures"
    out.mkdir(parents=True, exist_ok=True)
    from msgzoo.report.paper_units import EPISODES_PER_POINT

    map_name = f"{env.height}x{env.width}"
    paper = method.name in EPISODES_PER_POINT  # the paper's methods: draw its units and values beside msgzoo's
    title = f"{method.name} on Reaching Goals {map_name}"
    return {
        "learning_curves": plot_learning_curves(
            history, out / "learning_curves.png", horizon=horizon, title=title, final=final,
            method=method.name if paper else None, map_name=map_name, optimum=reaching_goals_optimum_value(env),
        ).resolve(),
        "signaling_scheme": plot_scheme_heatmaps(method, env, out / "signaling_scheme.png", seed=seed).resolve(),
        "episode_gif": save_episode_gif(method, env, out / "episode.gif", seed=seed).resolve(),
    }
