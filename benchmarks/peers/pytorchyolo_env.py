"""The virtual environment that runs the ``pytorchyolo`` peer, built on first use.

pytorchyolo needs torchvision, and PyPI's torchvision does not import beside the project's torch 2.13.0 CPU build, so
the peer lives in its own venv (``benchmarks/.venv-pytorchyolo``) with torch 2.14.1 + torchvision 0.29.1 (a CUDA build
that runs on the CPU).  pytorchyolo 1.8.0 declares ``torch<1.13`` and ``numpy<2``, so it is installed with
``--no-deps`` and its real dependencies are listed here (numpy 1.23.5: imgaug 0.4.0 still uses ``np.bool``).

    python benchmarks/peers/pytorchyolo_env.py          # build (or check) the venv and print its python
"""
from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

VENV_DIR = Path(__file__).resolve().parents[1] / ".venv-pytorchyolo"
REQUIREMENTS = ("torch==2.14.1", "torchvision==0.29.1", "numpy==1.23.5", "pillow>=9.1,<10", "imgaug==0.4.0",
                "matplotlib<3.9", "scipy<1.14", "terminaltables", "torchsummary", "tqdm", "tensorboard")
PEER = "pytorchyolo==1.8.0"


def venv_python(venv_dir: Path = VENV_DIR) -> Path:
    return venv_dir / "bin" / "python"


def _imports_ok(python: Path) -> bool:
    probe = "import torch, torchvision, pytorchyolo.models, pytorchyolo.utils.loss; print(torch.__version__)"
    return python.exists() and subprocess.run([str(python), "-c", probe], capture_output=True).returncode == 0


def ensure_venv(venv_dir: Path = VENV_DIR) -> Path:
    """Python of a venv where ``import pytorchyolo`` works, creating and filling it when needed (takes minutes)."""
    python = venv_python(venv_dir)
    if _imports_ok(python):
        return python
    if not python.exists():
        venv.EnvBuilder(with_pip=True).create(venv_dir)
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, *REQUIREMENTS], check=True)
    subprocess.run([*pip, "--no-deps", PEER], check=True)
    if not _imports_ok(python):
        raise RuntimeError(f"{venv_dir}: pytorchyolo still does not import; remove the folder and retry")
    return python


if __name__ == "__main__":
    print(ensure_venv())
    sys.exit(0)
