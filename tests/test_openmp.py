"""darknet_torch.openmp: OpenMP's waiting policy chosen from the load, applied before torch loads, user's wins."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from darknet_torch import openmp
from darknet_torch.openmp import configure_openmp, machine_is_busy, waits_passively

REPO = Path(__file__).resolve().parents[1]

# Pretends the machine is busy (or quiet) before anything imports darknet_torch, then imports it and makes torch
# start its OpenMP pool; OMP_DISPLAY_ENV makes libgomp print the settings it read when torch loaded it (its
# GOMP_SPINCOUNT: 0 passive, 300000 its default spin-wait, 30000000000 OMP_WAIT_POLICY=ACTIVE).
_PROBE = """
import importlib.util, os, sys
spec = importlib.util.spec_from_file_location("darknet_torch.openmp", {path!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
module.machine_is_busy = lambda cores=None: {busy}
sys.modules["darknet_torch.openmp"] = module
{entry}
import torch
torch.ones(64, 64) @ torch.ones(64, 64)
print("environ", os.environ.get("OMP_WAIT_POLICY"), torch.get_num_threads())
"""


def _probe(busy: bool, entry: str = "import darknet_torch", **env: str) -> tuple[str, str]:
    """(our stdout, libgomp's spin count) of a fresh interpreter."""
    environ = {name: value for name, value in os.environ.items() if not name.startswith(("OMP_", "GOMP_", "KMP_"))}
    environ.update(PYTHONPATH=str(REPO), OMP_DISPLAY_ENV="verbose", **env)
    code = _PROBE.format(path=str(REPO / "darknet_torch" / "openmp.py"), busy=busy, entry=entry)
    done = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    spin = next(line.split("=")[1].strip(" '") for line in done.stderr.splitlines()
                if line.strip().startswith("GOMP_SPINCOUNT"))
    return done.stdout.strip().splitlines()[-1], spin


def test_busy_machine_gets_passive_waiting_before_torch_loads() -> None:
    stdout, spin = _probe(busy=True)
    assert stdout.startswith("environ PASSIVE ") and spin == "0"  # libgomp itself read it


def test_every_command_gets_it_through_the_cli_entry_point() -> None:
    # the console script and `python -m darknet_torch` import darknet_torch.cli.main first
    assert _probe(busy=True, entry="import darknet_torch.cli.main")[1] == "0"


def test_quiet_machine_keeps_the_spin_wait_and_the_user_setting_wins() -> None:
    stdout, spin = _probe(busy=False)
    assert stdout.startswith("environ None ") and spin == "300000"
    assert _probe(busy=True, OMP_WAIT_POLICY="ACTIVE", OMP_NUM_THREADS="1") == ("environ ACTIVE 1", "30000000000")


@pytest.mark.parametrize("user", ["OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME"])
def test_user_settings_are_left_alone(monkeypatch: pytest.MonkeyPatch, user: str) -> None:
    monkeypatch.delitem(sys.modules, "torch")
    monkeypatch.setattr(openmp, "machine_is_busy", lambda cores=None: True)
    environ = {user: "100"}
    assert configure_openmp(environ) is None and environ == {user: "100"}


def test_nothing_changes_once_torch_is_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(openmp, "machine_is_busy", lambda cores=None: True)
    environ: dict[str, str] = {}
    assert "torch" in sys.modules and configure_openmp(environ) is None and environ == {}
    monkeypatch.delitem(sys.modules, "torch")
    assert configure_openmp(environ) == "PASSIVE" and environ == {"OMP_WAIT_POLICY": "PASSIVE"}


@pytest.mark.parametrize("loadavg, busy", [
    ("0.40 0.30 0.20 1/300 1234", False),   # only ourselves running, quiet minute
    ("0.40 0.30 0.20 3/300 1234", True),    # two other runnable tasks now
    ("2.10 1.00 0.50 1/300 1234", True),    # nothing else at this instant, but a sustained 2 on 2 cores
    ("2.58 5.36 6.44 1/300 1234", False),   # a load that ended: the 1-minute average is still falling
    ("1.90 1.00 0.50 1/300 1234", False),   # what a long run of ours leaves behind
])
def test_machine_is_busy_reads_runnable_tasks_and_load(monkeypatch: pytest.MonkeyPatch, loadavg: str,
                                                       busy: bool) -> None:
    monkeypatch.setattr(openmp, "_read_loadavg", lambda: loadavg.split())
    monkeypatch.setattr(openmp, "_SAMPLE_GAP", 0.0)
    assert machine_is_busy(cores=2) is busy


def test_unreadable_loadavg_counts_as_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    def unreadable() -> list[str]:
        raise OSError("no /proc")
    monkeypatch.setattr(openmp, "_read_loadavg", unreadable)
    assert machine_is_busy(cores=2) is False


@pytest.mark.parametrize("environ, passive", [
    ({"OMP_WAIT_POLICY": "PASSIVE"}, True), ({"OMP_WAIT_POLICY": " passive"}, True),
    ({"OMP_WAIT_POLICY": "ACTIVE"}, False), ({}, False), ({"GOMP_SPINCOUNT": "0"}, False),
])
def test_waits_passively_reads_the_policy_libgomp_loaded_with(environ: dict[str, str], passive: bool) -> None:
    assert waits_passively(environ) is passive
