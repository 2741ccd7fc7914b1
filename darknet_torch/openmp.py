"""OpenMP's waiting policy for torch's CPU threads, chosen from the machine's load before torch loads.

torch runs its CPU kernels on an OpenMP (libgomp) team, one thread per core.  Between parallel regions libgomp's
threads spin-wait for ~3 ms (``GOMP_SPINCOUNT=300000``) before they sleep, and every region ends in a barrier.  On a
quiet machine spinning saves each region a wake-up; on a shared one the spinning threads burn the time slices
the other processes need, and each barrier waits for whichever of our threads the kernel has descheduled.  With
four busy processes beside it on two cores, yolov3-tiny's ``--fast exact`` forward took 1214 ms with the spin-wait
and 343 ms with ``OMP_WAIT_POLICY=PASSIVE`` (onnxruntime 456 ms; benchmarks/README.md, "Busy machine").  On a quiet
machine passive waiting costs the forward ~20 %, so it is chosen only when the machine is busy.  libgomp reads the
policy once, when it loads (at ``import torch``), so :func:`configure_openmp` runs on ``import darknet_torch`` before
this package imports torch: every command, ``serve``, the loader processes and every subprocess inherit it.
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, MutableMapping

#: Any of these set by the user means the user chose: nothing is changed.
USER_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
#: Other runnable processes (on average) from which the machine counts as busy.
BUSY_RUNNABLE = 1.0
#: The 1-minute load average counts only while at least this fraction of the 5-minute one (a load still going on).
NOT_FALLING = 0.75
_SAMPLES, _SAMPLE_GAP = 5, 0.004


def configure_openmp(environ: MutableMapping[str, str] = os.environ) -> str | None:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` in ``environ`` when the machine is busy; return the value set, else None.

    Nothing changes when the user set any of :data:`USER_SETTINGS`, or when torch is already loaded (too late for
    libgomp: the caller's policy stays).  On a quiet machine libgomp's default spin-wait stays.
    """
    if "torch" in sys.modules or any(name in environ for name in USER_SETTINGS):
        return None
    if not machine_is_busy():
        return None
    environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return "PASSIVE"


def machine_is_busy(cores: int | None = None) -> bool:
    """Whether other work competes for this process's cores: on average at least :data:`BUSY_RUNNABLE` other
    runnable process right now (``/proc/loadavg``'s runnable count, a few samples over ~20 ms), or a 1-minute load
    average of at least the number of cores that is not falling (at least :data:`NOT_FALLING` of the 5-minute one:
    sustained oversubscription, which a previous run of ours alone does not reach; a load that has just ended
    still shows in the 1-minute average for a minute, and passive waiting then cost a near-quiet forward 5-10 %).
    False where ``/proc/loadavg`` cannot be read."""
    cores = cores or available_cores()
    try:
        runnable = []
        for sample in range(_SAMPLES):
            if sample:
                time.sleep(_SAMPLE_GAP)
            fields = _read_loadavg()
            runnable.append(int(fields[3].split("/")[0]) - 1)  # minus this process
        load1, load5 = float(fields[0]), float(fields[1])
    except (OSError, IndexError, ValueError):
        return False
    return sum(runnable) / len(runnable) >= BUSY_RUNNABLE or load1 >= max(cores, NOT_FALLING * load5)


def waits_passively(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether libgomp's threads sleep between parallel regions (``OMP_WAIT_POLICY=PASSIVE``: set by
    :func:`configure_openmp` on a busy machine, or by the user), so that every region first wakes them."""
    return environ.get("OMP_WAIT_POLICY", "").strip().upper() == "PASSIVE"


def available_cores() -> int:
    """The cores this process may run on (its affinity mask, e.g. under ``taskset`` or a container's cpuset)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _read_loadavg() -> list[str]:
    with open("/proc/loadavg") as file:
        return file.read().split()
