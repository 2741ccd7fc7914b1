"""Darknet's ``chart.png``: average loss and mAP over the iterations, redrawn as training goes.

Like Darknet's ``draw_train_loss`` the x axis spans ``0..max_batches`` and the loss axis ``0..max_chart_loss`` (the
``[net]`` key, default 20; higher losses are clipped to the top); mAP@0.5 is drawn in percent on a second axis.
Below it, the loss parts (box, objectness, class; summed over the heads, per image, averaged as the avg loss is).
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
    #: Loss part name -> its per-image value at each of ``loss_iterations`` (empty lists when not logged).
    parts: dict[str, list[float]] = field(default_factory=dict)

    def add_loss(self, iteration: int, avg_loss: float, parts: dict[str, float] | None = None) -> None:
        self.loss_iterations.append(iteration)
        self.avg_loss.append(avg_loss)
        for name, value in (parts or {}).items():
            self.parts.setdefault(name, [math.nan] * (len(self.loss_iterations) - 1)).append(value)
        for values in self.parts.values():  # a part missing this iteration
            if len(values) < len(self.loss_iterations):
                values.append(math.nan)

    def add_map(self, iteration: int, value: float) -> None:
        self.map_iterations.append(iteration)
        self.map.append(value)

    def state_dict(self) -> dict:
        return {"loss_iterations": list(self.loss_iterations), "avg_loss": list(self.avg_loss),
                "map_iterations": list(self.map_iterations), "map": list(self.map),
                "parts": {name: list(values) for name, values in self.parts.items()}}

    @classmethod
    def from_state_dict(cls, state: dict) -> "TrainingHistory":
        """Also reads states written before the loss parts were kept (no ``parts``)."""
        lists = {key: list(state[key]) for key in ("loss_iterations", "avg_loss", "map_iterations", "map")}
        parts = {name: list(values) for name, values in state.get("parts", {}).items()}
        return cls(**lists, parts=parts)


def smoothed(values: list[float], keep: float = 0.9) -> list[float]:
    """Darknet's running average (``avg = avg * 0.9 + value * 0.1``, started at the first value); NaN is skipped."""
    out, avg = [], math.nan
    for value in values:
        if math.isfinite(value):
            avg = value if not math.isfinite(avg) else avg * keep + value * (1 - keep)
        out.append(avg)
    return out


def render_chart(history: TrainingHistory, max_batches: int, max_loss: float, title: str) -> bytes:
    """PNG bytes of the chart (1000x800 pixels; the loss parts below when there are any)."""
    figure = Figure(figsize=(10, 8), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    if history.parts:
        ax, ax_parts = figure.subplots(2, 1, sharex=True, height_ratios=(3, 1.4))
        for name, values in history.parts.items():
            ax_parts.plot(history.loss_iterations, smoothed(values), linewidth=1, label=name)
        ax_parts.set_ylim(bottom=0)
        ax_parts.set_ylabel("loss parts (avg)")
        ax_parts.set_xlabel("iteration")
        ax_parts.grid(True, alpha=0.3)
        ax_parts.legend(loc="upper right", fontsize="small", ncols=len(history.parts))
    else:
        ax = figure.add_subplot()
        ax.set_xlabel("iteration")
    clipped = [min(v, max_loss) if math.isfinite(v) else max_loss for v in history.avg_loss]
    ax.plot(history.loss_iterations, clipped, color="tab:blue", linewidth=1, label="avg loss")
    ax.set_xlim(0, max(max_batches, 1))
    ax.set_ylim(0, max_loss)
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
