"""Darknet's ``chart.png``: average loss and mAP over the iterations, redrawn as training goes.

Like Darknet's ``draw_train_loss`` the x axis spans ``0..max_batches`` and the loss axis ``0..max_chart_loss`` (the
``[net]`` key, default 20; higher losses are clipped to the top); mAP@0.5 is drawn in percent on a second axis.
Uses matplotlib's Agg canvas directly (no pyplot global state); the file is written atomically.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from darknet_torch.files import write_atomic


@dataclass
class TrainingHistory:
    """What the chart shows, kept in the training state so a resumed run redraws the whole curve."""

    loss_iterations: list[int] = field(default_factory=list)
    avg_loss: list[float] = field(default_factory=list)
    map_iterations: list[int] = field(default_factory=list)
    map: list[float] = field(default_factory=list)  # mAP@0.5 in [0, 1]

    def add_loss(self, iteration: int, avg_loss: float) -> None:
        self.loss_iterations.append(iteration)
        self.avg_loss.append(avg_loss)

    def add_map(self, iteration: int, value: float) -> None:
        self.map_iterations.append(iteration)
        self.map.append(value)

    def state_dict(self) -> dict:
        return {"loss_iterations": list(self.loss_iterations), "avg_loss": list(self.avg_loss),
                "map_iterations": list(self.map_iterations), "map": list(self.map)}

    @classmethod
    def from_state_dict(cls, state: dict) -> "TrainingHistory":
        return cls(**{key: list(state[key]) for key in ("loss_iterations", "avg_loss", "map_iterations", "map")})


def render_chart(history: TrainingHistory, max_batches: int, max_loss: float, title: str) -> bytes:
    """PNG bytes of the chart (1000x800 pixels)."""
    figure = Figure(figsize=(10, 8), dpi=100)
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    clipped = [min(v, max_loss) if math.isfinite(v) else max_loss for v in history.avg_loss]
    ax.plot(history.loss_iterations, clipped, color="tab:blue", linewidth=1, label="avg loss")
    ax.set_xlim(0, max(max_batches, 1))
    ax.set_ylim(0, max_loss)
    ax.set_xlabel("iteration")
    ax.set_ylabel("avg loss", color="tab:blue")
    ax.grid(True, alpha=0.3)
    current = f"  current avg loss = {history.avg_loss[-1]:.4f}" if history.avg_loss else ""
    ax.set_title(f"{title}{current}")
    if history.map:
        ax_map = ax.twinx()
        percent = [100 * v for v in history.map]
        ax_map.plot(history.map_iterations, percent, color="tab:red", marker="o", markersize=3, label="mAP@0.5")
        ax_map.set_ylim(0, 100)
        ax_map.set_ylabel("mAP@0.5 %", color="tab:red")
        best = max(percent)
        ax_map.annotate(f"{percent[-1]:.1f}% (best {best:.1f}%)", (history.map_iterations[-1], percent[-1]),
                        textcoords="offset points", xytext=(-10, 8), ha="right", color="tab:red")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def write_chart(path: Path, history: TrainingHistory, max_batches: int, max_loss: float, title: str) -> None:
    """Render and atomically replace ``path``."""
    write_atomic(path, render_chart(history, max_batches, max_loss, title))
