"""The paper's Reaching Goals numbers (Figure 2 d-h) and its units, so msgzoo's curves can be laid on its figure.

Units. In the authors' code every logged point of SGOC, SG, PG and PGOC is the undiscounted reward summed over one
collected batch of **two** 50-step episodes, plotted at ``x = real episodes / 2``; DIAL's code logs one-episode sums
against real episodes. msgzoo logs returns **per episode** against real episodes. So, for a method whose paper curve
sums ``k`` episodes per point (:func:`episodes_per_point`: 2, DIAL 1)::

    paper x = real episodes / k,        paper y = k * (return per episode)

:func:`to_paper_units` and :func:`from_paper_units` convert; :data:`FIGURE2` holds the paper's values read by eye
from Figure 2 (e-h), already converted to returns per episode at a budget in real episodes.

Source of :data:`FIGURE2`: the project's reference notes (``REFERENCE_RESULTS.md``, section "Units of Figure 2
(d-h)"), which read Figure 2 of Lin et al. (NeurIPS 2023) by eye and fixed the units from the authors' code. They
are plot readings (a few units of uncertainty), not exact numbers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from msgzoo.envs.common import require

__all__ = ["PaperPoint", "FIGURE2", "episodes_per_point", "to_paper_units", "from_paper_units", "paper_points"]

#: Episodes summed in one logged point of the paper's curves, per method (the authors' code).
EPISODES_PER_POINT = {"sgoc": 2, "sg": 2, "pg": 2, "pgoc": 2, "dial": 1}


@dataclass(frozen=True)
class PaperPoint:
    """One value of the paper's Figure 2, **per 50-step episode** at ``real_episodes`` (``None``: not read)."""

    map: str
    method: str
    real_episodes: float
    sender: float | None
    receiver: float | None
    welfare: float | None


#: The paper's Reaching Goals values (Figure 2 e-h read by eye), per episode, at the paper's budgets in real
#: episodes (its x axis ends at 1e5 on 3x3 and 3e5 on 5x5, i.e. 2e5 and 6e5 real episodes; DIAL: 1e5 real).
FIGURE2 = (
    PaperPoint("3x3", "sgoc", 2e5, 125.0, 15.0, 145.0),
    PaperPoint("3x3", "sg", 2e5, 85.0, 5.0, 100.0),
    PaperPoint("3x3", "pgoc", 2e5, -45.0, -50.0, -95.0),
    PaperPoint("3x3", "pg", 2e5, -50.0, -50.0, -95.0),
    PaperPoint("3x3", "dial", 1e5, -50.0, 270.0, 220.0),
    PaperPoint("5x5", "sgoc", 6e5, 65.0, None, 15.0),
    PaperPoint("5x5", "pgoc", 6e5, -60.0, None, -120.0),
)


def episodes_per_point(method: str) -> int:
    """How many episodes one point of the paper's curve for ``method`` sums (2; DIAL 1)."""
    require(method in EPISODES_PER_POINT, "method", method, f"one of {sorted(EPISODES_PER_POINT)}")
    return EPISODES_PER_POINT[method]


def to_paper_units(episodes: Sequence[float] | np.ndarray | float, returns: Sequence[float] | np.ndarray | float,
                   method: str) -> tuple[np.ndarray, np.ndarray]:
    """``(real episodes, returns per episode)`` -> the paper's ``(x, y)``: ``(episodes / k, k * returns)``."""
    k = episodes_per_point(method)
    return np.asarray(episodes, dtype=np.float64) / k, np.asarray(returns, dtype=np.float64) * k


def from_paper_units(x: Sequence[float] | np.ndarray | float, y: Sequence[float] | np.ndarray | float,
                     method: str) -> tuple[np.ndarray, np.ndarray]:
    """The paper's ``(x, y)`` -> ``(real episodes, returns per episode)``: ``(k * x, y / k)``."""
    k = episodes_per_point(method)
    return np.asarray(x, dtype=np.float64) * k, np.asarray(y, dtype=np.float64) / k


def paper_points(map_name: str, method: str | None = None) -> list[PaperPoint]:
    """The :data:`FIGURE2` values of one map (``"3x3"``; ``"5x5"``, also for ``5x5_paper``), optionally one method."""
    name = map_name.split("_")[0]
    return [p for p in FIGURE2 if p.map == name and (method is None or p.method == method)]
