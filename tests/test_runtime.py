"""darknet_torch.runtime: device selection and the process-wide allocator setting."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from darknet_torch.errors import DarknetError
from darknet_torch.runtime import loader_workers, model_device, select_device, torch_threads

# Allocates and frees a 64 MiB tensor, then reports how many mmapped blocks (glibc's mallinfo2().hblks) a second one
# adds: with keep_freed_memory the second comes from the heap, not from a fresh mmap.
_PROBE = """
import ctypes, sys, torch
from darknet_torch.runtime import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "1" else False

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
first = torch.empty(16 << 20)
del first
before = libc.mallinfo2().hblks
again = torch.empty(16 << 20)
print(int(applied), libc.mallinfo2().hblks - before)
"""


def _probe(apply: bool) -> tuple[int, int]:
    done = subprocess.run([sys.executable, "-c", _PROBE, "1" if apply else "0"], capture_output=True, text=True)
    if done.returncode != 0 and "mallinfo2" in done.stderr:
        pytest.skip("the C library is not glibc >= 2.33 (no mallinfo2)")
    assert done.returncode == 0, done.stderr
    applied, mmapped = (int(v) for v in done.stdout.split())
    return applied, mmapped


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_keep_freed_memory_serves_large_tensors_from_the_heap():
    assert _probe(apply=False) == (0, 1)  # glibc's default: a 64 MiB block is a fresh mmap
    assert _probe(apply=True) == (1, 0)


def test_select_device():
    assert select_device(None) == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert select_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(DarknetError, match="CUDA is not available"):
            select_device("0")
    for name in ("bogus", "-1", "cuda:x", "\u00b2"):  # torch's RuntimeError was a traceback in every command
        with pytest.raises(DarknetError, match=f"device '{name}' is not a device name; use --device cpu"):
            select_device(name)


def test_loader_workers_default_to_none_on_the_cpu():
    assert loader_workers(torch.device("cpu"), 4) == 0
    assert loader_workers(torch.device("cuda", 1), 4) == 4


def test_torch_threads_sets_the_count_in_the_block_and_restores_it_after_an_error():
    caller = torch.get_num_threads()
    with pytest.raises(KeyError):
        with torch_threads(caller + 1):
            assert torch.get_num_threads() == caller + 1
            raise KeyError("inside")
    assert torch.get_num_threads() == caller


def test_model_device_is_the_parameters_device_or_the_cpu():
    assert model_device(torch.nn.Linear(2, 2, device="meta")) == torch.device("meta")
    assert model_device(torch.nn.ReLU()) == torch.device("cpu")
