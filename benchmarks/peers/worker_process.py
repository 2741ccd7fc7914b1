"""A benchmark engine in a long-lived subprocess (its own venv or environment), so its runs interleave with ours.

The worker reads one JSON request per line on stdin and answers one JSON line on stdout (``{"error": ...}`` on
failure); :class:`WorkerProcess` is the parent's end.
"""
from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any


class WorkerProcess:
    """``call(cmd, **arguments) -> dict`` runs one request in the worker started by ``command`` with ``env``."""

    def __init__(self, command: Sequence[str], env: Mapping[str, str], name: str = "worker") -> None:
        self.name = name
        self.process = subprocess.Popen(list(command), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                        bufsize=1, env=dict(env))

    def call(self, cmd: str, **arguments: Any) -> dict:
        self.process.stdin.write(json.dumps({"cmd": cmd, **arguments}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.name} worker exited (status {self.process.wait()}) during {cmd!r}")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"{self.name} {cmd}: {answer['error']}")
        return answer

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            self.process.stdin.close()
            self.process.wait(timeout=60)

    def __enter__(self) -> "WorkerProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve_requests(worker: object) -> int:
    """The worker's loop: ``worker.<cmd>(**arguments)`` for every request line until ``quit`` or end of input.

    Answers go to the original stdout; anything else printed (libraries, loader processes) goes to stderr.
    """
    import os
    import sys

    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    for line in sys.stdin:
        request = json.loads(line)
        cmd = request.pop("cmd")
        if cmd == "quit":
            break
        try:
            answer = getattr(worker, cmd)(**request)
        except Exception as error:  # reported to the parent, which raises it there
            answer = {"error": f"{type(error).__name__}: {error}"}
        answers.write(json.dumps(answer) + "\n")
        answers.flush()
    return 0
