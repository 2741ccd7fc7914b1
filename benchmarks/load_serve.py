#!/usr/bin/env python
"""Bounded load test of ``darknet_torch serve``: requests/s and p50/p95 latency with 1, 4 and 16 concurrent clients.

    python benchmarks/load_serve.py                              # yolov3-tiny, ../shared/images/dog.jpg
    python benchmarks/load_serve.py --clients 1 4 16 --rounds 2 --duration 20 --requests 500 --max-batch 4
    python benchmarks/load_serve.py --fast none --rounds 1                  # the plain model (default: serve's auto)

It starts its own server on 127.0.0.1 (a free port; it never sends traffic anywhere else), warms it up, then for each
client count runs that many threads, each with one keep-alive connection posting the image as raw bytes, until
``--requests`` answers or ``--duration`` seconds, whichever comes first.  It reports answers, deliberate 503s (queue
full), errors (anything else), requests/s, latency percentiles, and the server's resident memory (VmRSS) before and
after each phase and its peak (VmHWM); ``--rounds`` repeats the client counts, so a leak shows as growth from round
to round.  Exit status 1 when any request failed other than with a 503.
"""
from __future__ import annotations

import argparse
import http.client
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from darknet_torch.model.fast import AUTO, FAST_CHOICES  # noqa: E402

HOST = "127.0.0.1"


@dataclass
class Phase:
    """What one client count measured."""

    clients: int
    round: int
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, answered (200) requests only
    busy: int = 0  # 503s: the queue was full, as designed
    errors: list[str] = field(default_factory=list)
    rss_before: int = 0
    rss_after: int = 0

    def percentile_ms(self, q: float) -> float:
        return 1000 * float(np.percentile(self.latencies, q)) if self.latencies else float("nan")


def memory_kib(pid: int, key: str) -> int:
    """A ``/proc/<pid>/status`` memory line (VmRSS, VmHWM) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {key} for process {pid}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def start_server(args: argparse.Namespace, port: int, log_path: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "darknet_torch", "serve", "--host", HOST, "--port", str(port),
               "--cfg", str(args.cfg), "--weights", str(args.weights), "--max-batch", str(args.max_batch),
               "--queue-size", str(args.queue_size), "--timeout", str(args.timeout),
               "--fast", args.fast]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited ({process.returncode}); log:\n{log_path.read_text()}")
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=5)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"server not up after 120 s; log:\n{log_path.read_text()}")


def post(conn: http.client.HTTPConnection, data: bytes) -> tuple[int, bytes]:
    """POST the image as raw bytes on a kept-alive connection; (status, body)."""
    conn.request("POST", "/predict", body=data, headers={"Content-Type": "image/jpeg"})
    response = conn.getresponse()
    return response.status, response.read()


def run_phase(port: int, data: bytes, phase: Phase, max_requests: int, duration: float, pid: int) -> None:
    lock = threading.Lock()
    issued = 0
    deadline = time.monotonic() + duration

    def client() -> None:
        nonlocal issued
        conn = http.client.HTTPConnection(HOST, port, timeout=60)
        try:
            while time.monotonic() < deadline:
                with lock:
                    if issued >= max_requests:
                        return
                    issued += 1
                start = time.perf_counter()
                try:
                    status, body = post(conn, data)
                except (OSError, http.client.HTTPException) as exc:
                    with lock:
                        phase.errors.append(f"{type(exc).__name__}: {exc}")
                    conn.close()
                    conn = http.client.HTTPConnection(HOST, port, timeout=60)
                    continue
                elapsed = time.perf_counter() - start
                with lock:
                    if status == 200:
                        phase.latencies.append(elapsed)
                    elif status == 503:
                        phase.busy += 1
                    else:
                        phase.errors.append(f"HTTP {status}: {body[:200]!r}")
        finally:
            conn.close()

    phase.rss_before = memory_kib(pid, "VmRSS")
    threads = [threading.Thread(target=client) for _ in range(phase.clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    phase.seconds = time.perf_counter() - start
    phase.rss_after = memory_kib(pid, "VmRSS")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cfg", type=Path, default=REPO / "cfg" / "yolov3-tiny.cfg")
    parser.add_argument("--weights", type=Path, default=REPO.parent / "shared" / "weights" / "yolov3-tiny.weights")
    parser.add_argument("--image", type=Path, default=REPO.parent / "shared" / "images" / "dog.jpg")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--requests", type=int, default=200, help="answers per phase at most (default: %(default)s)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per phase at most (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=4, help="run the client counts this many times, to see "
                        "whether memory keeps growing (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=10, help="requests before measuring (default: %(default)s)")
    parser.add_argument("--max-batch", type=int, default=4)
    parser.add_argument("--queue-size", type=int, default=32)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--fast", choices=FAST_CHOICES, default=AUTO,
                        help="serve --fast MODE (default: %(default)s, serve's)")
    args = parser.parse_args()
    data = args.image.read_bytes()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(args, port, Path(tmp) / "server.log")
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=60)
            for _ in range(args.warmup):
                status, body = post(conn, data)
                if status != 200:
                    raise RuntimeError(f"warm-up request failed: HTTP {status}: {body[:200]!r}")
            conn.close()
            load_before = os.getloadavg()[0]
            phases = [Phase(n, round_) for round_ in range(1, args.rounds + 1) for n in args.clients]
            for phase in phases:
                run_phase(port, data, phase, args.requests, args.duration, server.pid)
            peak = memory_kib(server.pid, "VmHWM")
            load_after = os.getloadavg()[0]
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"{args.cfg.name} on {args.image.name}, server --max-batch {args.max_batch} --queue-size "
          f"{args.queue_size}, {os.cpu_count()} CPU(s) shared by server and clients; per phase at most "
          f"{args.requests} requests or {args.duration:g} s; 1-min load average {load_before:.1f} before, "
          f"{load_after:.1f} after")
    print(f"{'round':>5} {'clients':>7} {'answers':>7} {'503':>5} {'errors':>6} {'req/s':>7} {'p50 ms':>7} "
          f"{'p95 ms':>7} {'RSS before MiB':>14} {'RSS after MiB':>13}")
    for p in phases:
        print(f"{p.round:>5} {p.clients:>7} {len(p.latencies):>7} {p.busy:>5} {len(p.errors):>6} "
              f"{len(p.latencies) / p.seconds:>7.1f} {p.percentile_ms(50):>7.1f} {p.percentile_ms(95):>7.1f} "
              f"{p.rss_before / 1024:>14.1f} {p.rss_after / 1024:>13.1f}")
    print(f"server peak RSS (VmHWM): {peak / 1024:.1f} MiB")
    if args.rounds > 1:  # the same load again: a leak shows as growth between the rounds' ends
        ends = [p.rss_after for p in phases if p.clients == args.clients[-1]]
        print(f"RSS at the end of each round: {', '.join(f'{kib / 1024:.1f}' for kib in ends)} MiB "
              f"(change from the first round: {(ends[-1] - ends[0]) / 1024:+.1f} MiB)")
    errors = [e for p in phases for e in p.errors]
    for message in sorted(set(errors))[:10]:
        print(f"error: {message}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
