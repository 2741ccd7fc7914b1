"""Checkpoints: Darknet's ``.weights`` in ``backup`` and the full training state for ``--resume``.

Darknet's ``train_detector`` writes ``<cfg>_last.weights`` (every ``savelast`` iterations, default 100),
``<cfg>_<iteration>.weights`` (every ``saveweights``: 1000, or 10000 when ``max_batches >= 10000``),
``<cfg>_best.weights`` (each time ``-map`` finds a mAP at least as good), ``<cfg>_ema.weights`` and
``<cfg>_final.weights``, where ``<cfg>`` is the cfg file name up to its first dot (``basecfg``).  The header's
``seen`` is ``iteration * batch`` as ``save_weights`` writes it, so Darknet resumes from the same iteration.

Beside them ``<cfg>_last.pt`` holds everything needed to continue bit for bit: model, optimizer (momentum buffers),
EMA, AMP scaler, iteration, loss/mAP history, the schedule and the RNG states.  It stores only tensors and plain
Python values, is loaded with ``torch.load(weights_only=True)``, and is also a model file ``load_model`` accepts.
Every file is written to a temporary name and renamed, so a kill never leaves a torn checkpoint.
"""
from __future__ import annotations

import io
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from darknet_torch.errors import DarknetError
from darknet_torch.files import write_atomic
from darknet_torch.model.darknet import Darknet
from darknet_torch.model.loading import read_torch_file

STATE_FORMAT = "darknet_torch.train_state"
STATE_VERSION = 1


def basecfg(cfg: str | Path) -> str:
    """Darknet's ``basecfg``: the file name without folders, cut at its first dot."""
    return Path(cfg).name.split(".")[0]


@dataclass(frozen=True)
class CheckpointPaths:
    """Where training writes, named as Darknet names its backups."""

    backup: Path
    base: str

    def weights(self, tag: str | int) -> Path:
        """``<base>_<tag>.weights`` for tag ``last``/``best``/``final``/``ema`` or an iteration number."""
        return self.backup / f"{self.base}_{tag}.weights"

    @property
    def state(self) -> Path:
        return self.backup / f"{self.base}_last.pt"

    @property
    def chart(self) -> Path:
        return self.backup / f"chart_{self.base}.png"

    @property
    def results(self) -> Path:
        """Per-iteration numbers (``train.results_log``)."""
        return self.backup / f"results_{self.base}.csv"

    @property
    def own_names(self) -> tuple[str, ...]:
        """Prefixes of the file names this run writes in ``backup`` (weights, state, chart, results): the temporary
        files :func:`~darknet_torch.files.remove_stale_temps` may clean up are only these, never another cfg's."""
        return f"{self.base}_", self.chart.name, self.results.name

    @property
    def tensorboard(self) -> Path:
        return self.backup / f"tensorboard_{self.base}"

    @property
    def previews(self) -> Path:
        """Augmented training batches as JPEG mosaics (``--show-imgs``)."""
        return self.backup / f"batches_{self.base}"


class CheckpointWriteError(DarknetError):
    """A checkpoint could not be written (disk full, read-only folder); the files already there are unchanged."""


@contextmanager
def stopping_on_write_error(path: Path, iteration: int) -> Iterator[None]:
    """Turn an ``OSError`` while writing ``path`` into one clear :class:`CheckpointWriteError` that names the path,
    the reason and what is kept (atomic writes never touch the previous file)."""
    try:
        yield
    except OSError as exc:
        raise CheckpointWriteError(
            f"{path}: cannot write ({exc.strerror or exc}); training stopped at iteration {iteration}; the "
            f"checkpoints already in {path.parent} are unchanged (free space or fix the folder, then --resume)"
        ) from None


def save_weights(model: Darknet, path: Path, seen: int) -> None:
    """Darknet-loadable ``.weights`` with the header's ``seen`` set (atomic)."""
    model.header.seen = seen
    model.save_darknet_weights(path)


def save_state(path: Path, state: dict) -> None:
    """Write a training-state dict atomically (serialised in memory, then temp file + rename)."""
    buffer = io.BytesIO()
    torch.save({"format": STATE_FORMAT, "version": STATE_VERSION, **state}, buffer)
    write_atomic(path, buffer.getvalue())


def load_state(path: str | Path) -> dict:
    """Read a file written by :func:`save_state` with ``weights_only=True``; a clear error if it is anything else."""
    path = Path(path)
    if not path.is_file():
        raise DarknetError(f"training state not found: {path}")
    state = read_torch_file(path, "darknet_torch training state")
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise DarknetError(f"{path}: not a darknet_torch training state (no {STATE_FORMAT!r} marker)")
    if state.get("version") != STATE_VERSION:
        raise DarknetError(f"{path}: training state version {state.get('version')} is not supported "
                           f"(this darknet_torch writes version {STATE_VERSION})")
    return state


def rng_state() -> dict:
    """Torch's CPU and CUDA generator states (the only RNGs the training loop itself draws from)."""
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def write_partial(cfg: str | Path, weights: str | Path, output: str | Path, layers: int) -> Darknet:
    """Darknet's ``partial``: keep the weights of layers ``0..layers-1`` (e.g. a backbone ``x.conv.N``), ``seen=0``.

    Raises:
        DarknetError: ``layers`` out of range; WeightsError: weights too short for those layers.
    """
    model = Darknet(cfg)
    count = len(model.module_list)
    if not 0 < layers <= count:
        raise DarknetError(f"--layers {layers}: {cfg} has layers 0..{count - 1}; give 1..{count}")
    model.load_darknet_weights(weights, cutoff=layers)
    model.header.seen = 0
    model.save_darknet_weights(output, cutoff=layers)
    return model
