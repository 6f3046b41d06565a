"""Pictures of Reaching Goals: RGB frames (pure numpy) and signaling-scheme heatmaps (matplotlib)."""
from __future__ import annotations

import numpy as np
import torch

BACKGROUND = (245, 245, 245)
GRID = (90, 90, 90)
RECEIVER = (30, 60, 200)  # blue disc
RED_APPLE = (215, 40, 40)
GREEN_APPLE = (40, 170, 60)
MESSAGE = (245, 200, 0)  # yellow frame around the message cell ("fake apple")


def _as_cells(state, name: str = "state") -> np.ndarray:
    if isinstance(state, torch.Tensor):
        state = state.detach().cpu().numpy()
    state = np.asarray(state)
    if state.ndim not in (1, 2) or state.shape[-1] != 3:
        raise ValueError(f"{name} has shape {state.shape}: expected [3] or [N, 3] flat cells (receiver, red, green).")
    return state.astype(np.int64)


def _disc(px: int, radius: float) -> np.ndarray:
    """Boolean mask ``[px, px]`` of a disc centred in a cell."""
    c = (px - 1) / 2.0
    yy, xx = np.mgrid[0:px, 0:px]
    return (yy - c) ** 2 + (xx - c) ** 2 <= radius**2


def render_frame(
    state,
    height: int,
    width: int,
    message_cell: int | None = None,
    cell_px: int = 48,
) -> np.ndarray:
    """Draw one Reaching Goals state as an RGB image.

    Args:
        state: flat cells ``(receiver, red apple, green apple)``, shape ``[3]``; a batch ``[N, 3]`` draws its
            first environment (index the batch yourself, or use :meth:`ReachingGoalsEnv.render`, for another).
        height, width: grid size.
        message_cell: the cell the sender's message points to, drawn as a yellow frame ("fake apple"), or None.
        cell_px: side of a cell in pixels.

    Returns:
        ``np.uint8`` array ``[height * cell_px, width * cell_px, 3]``. The apples are squares in the cell (the red
        one in the upper-left half, the green one in the lower-right half when they share a cell); the receiver is
        a blue disc drawn on top.
    """
    cells = _as_cells(state)
    if cells.ndim == 2:
        cells = cells[0]
    num_cells = height * width
    if ((cells < 0) | (cells >= num_cells)).any():
        raise ValueError(f"state={cells.tolist()} holds cells outside the {height}x{width} grid.")
    if message_cell is not None and not 0 <= int(message_cell) < num_cells:
        raise ValueError(f"message_cell={message_cell} is outside the {height}x{width} grid.")
    px = int(cell_px)
    if px < 8:
        raise ValueError(f"cell_px={cell_px} is too small: expected at least 8 pixels.")
    img = np.empty((height * px, width * px, 3), dtype=np.uint8)
    img[:] = BACKGROUND

    def cell_view(cell: int) -> np.ndarray:
        r, c = divmod(int(cell), width)
        return img[r * px : (r + 1) * px, c * px : (c + 1) * px]

    receiver, red, green = (int(x) for x in cells)
    m = max(2, px // 8)  # margin
    if message_cell is not None:
        view = cell_view(message_cell)
        b = max(2, px // 10)
        view[:b], view[-b:], view[:, :b], view[:, -b:] = MESSAGE, MESSAGE, MESSAGE, MESSAGE
    if red == green:
        half = px // 2
        cell_view(red)[m:half, m:half] = RED_APPLE
        cell_view(green)[half : px - m, half : px - m] = GREEN_APPLE
    else:
        cell_view(red)[m : px - m, m : px - m] = RED_APPLE
        cell_view(green)[m : px - m, m : px - m] = GREEN_APPLE
    cell_view(receiver)[_disc(px, px * 0.3)] = RECEIVER
    # Grid lines (1 px) on cell borders, plus the outer frame.
    img[::px, :] = GRID
    img[:, ::px] = GRID
    img[-1, :] = GRID
    img[:, -1] = GRID
    return img


def plot_signaling_scheme(
    phi,
    height: int,
    width: int,
    ax=None,
    state=None,
    title: str | None = None,
):
    """Draw a signaling scheme ``phi(. | s)`` (``H * W`` message probabilities, one per cell) as a heatmap.

    Each cell shows its probability; if ``state`` (flat cells ``(receiver, red, green)``) is given, the receiver
    is marked by a blue circle and the apples by red / green squares. Returns the matplotlib ``Axes`` (nothing is
    shown: save the figure or display it yourself).
    """
    import matplotlib.pyplot as plt

    if isinstance(phi, torch.Tensor):
        phi = phi.detach().cpu().numpy()
    probs = np.asarray(phi, dtype=np.float64).reshape(-1)
    if probs.size != height * width:
        raise ValueError(f"phi has {probs.size} entries: expected height*width = {height * width}.")
    grid = probs.reshape(height, width)
    if ax is None:
        _, ax = plt.subplots(figsize=(0.9 * width + 1.5, 0.9 * height + 0.5))
    image = ax.imshow(grid, cmap="viridis", vmin=0.0, vmax=1.0)  # a fixed scale: schemes compare across plots
    for r in range(height):
        for c in range(width):
            value = grid[r, c]
            ax.text(c, r, f"{value:.2f}", ha="center", va="center",
                    color="black" if value > 0.6 else "white", fontsize=9)
    if state is not None:
        receiver, red, green = (int(x) for x in _as_cells(state).reshape(-1, 3)[0])
        for cell, color, dx in ((red, "red", -0.22), (green, "limegreen", 0.22)):
            r, c = divmod(cell, width)
            ax.add_patch(plt.Rectangle((c + dx - 0.12, r + 0.18), 0.24, 0.24, color=color, ec="white", lw=1))
        r, c = divmod(receiver, width)
        ax.add_patch(plt.Circle((c, r - 0.25), 0.15, fill=False, ec="deepskyblue", lw=2))
    ax.set_xticks(range(width))
    ax.set_yticks(range(height))
    ax.set_xticks(np.arange(-0.5, width, 1), minor=True)
    ax.set_yticks(np.arange(-0.5, height, 1), minor=True)
    ax.grid(which="minor", color="white", linewidth=1)
    ax.tick_params(which="minor", length=0)
    if title is not None:
        ax.set_title(title)
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return ax
