"""Fixtures for the serving tests: the real ``darknet_torch serve`` CLI in a subprocess on a loopback port."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from tests.serve.serving import UPLOAD_CAP_MB, free_port, require_serve_extra, wait_healthy


@pytest.fixture(scope="session")
def yolo_cfg(repo_root: Path) -> Path:
    return repo_root / "cfg" / "yolov3-tiny.cfg"


@pytest.fixture(scope="session")
def dog_jpg(shared_dir: Path) -> Path:
    path = shared_dir / "images" / "dog.jpg"
    if not path.exists():
        pytest.skip(f"{path} not found")
    return path


@pytest.fixture(scope="session")
def cli_server(repo_root: Path, yolo_cfg: Path, real_weights: Path,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``darknet_torch serve`` with the real yolov3-tiny in a subprocess on 127.0.0.1; yields its base URL."""
    require_serve_extra()
    log_path = tmp_path_factory.mktemp("serve") / "server.log"
    for attempt in range(3):  # the free port can be taken between probing and binding; try another
        base = f"http://127.0.0.1:{free_port()}"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "darknet_torch", "serve", "--cfg", str(yolo_cfg), "--weights",
                 str(real_weights), "--port", base.rsplit(":", 1)[1], "--max-upload-mb", str(UPLOAD_CAP_MB)],
                cwd=repo_root, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            wait_healthy(base, 120, process)
            break
        except RuntimeError:
            process.kill()
            process.wait()
            if attempt == 2:
                raise RuntimeError(f"server did not start; its log:\n{log_path.read_text()}") from None
    try:
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
