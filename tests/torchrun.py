"""Running ``darknet_torch`` commands in several CPU processes under torchrun (gloo), for the scale-out tests."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def torchrun(args: list[str], processes: int = 2, timeout: float = 600, cwd: Path | None = None
             ) -> subprocess.CompletedProcess[str]:
    """``python -m torch.distributed.run --standalone --nproc_per_node=PROCESSES -m darknet_torch ARGS`` with this
    checkout first on the path, one thread per process, and a free port (``--standalone``)."""
    path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "-m", "darknet_torch", *args]
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
