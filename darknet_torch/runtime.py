"""Where and how to run: device selection and CPU thread settings, in one place for every command."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from darknet_torch.config.sections import DIGITS_TEXT
from darknet_torch.errors import DarknetError


def select_device(name: str | None = None) -> torch.device:
    """``None``/``"auto"``: the first CUDA device if there is one, else the CPU; otherwise ``torch.device(name)``."""
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if DIGITS_TEXT.fullmatch(name):
        name = f"cuda:{name}"
    try:
        device = torch.device(name)
    except RuntimeError:  # torch's message lists its twenty device types
        raise DarknetError(f"device {name!r} is not a device name; use --device cpu, cuda, cuda:N or N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DarknetError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    return device


def model_device(model: nn.Module) -> torch.device:
    """The device ``model``'s parameters are on (the CPU for a model without any)."""
    return next(model.parameters(), torch.empty(0)).device


#: The CPUs whose oneDNN has bfloat16 convolution kernels, as messages name them (:func:`native_bfloat16`).
BFLOAT16_CPUS = "AVX-512, AVX-NE-CONVERT or AMX"


def native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` convolves bfloat16 at speed: a CUDA GPU of compute capability 8 or later (Ampere: older
    ones only emulate it), or a CPU whose oneDNN has bfloat16 kernels (AVX-512 BW/VL/DQ, AVX-NE-CONVERT or AMX;
    native with AVX512-BF16/AMX).  Elsewhere torch's bfloat16 convolutions are reference loops, 8-30x slower than
    float32 (an AVX2 CPU, 64 -> 128 channels on 104 x 104: 189 vs 24 ms), and oneDNN's fused convolution, which
    ``--fast bf16`` runs, refuses to start."""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device)[0] >= 8
    if device.type != "cpu":
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # an older torch: oneDNN's bfloat16 kernels start at AVX-512
        return torch.backends.cpu.get_cpu_capability().startswith("AVX512")


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """torch's intra-op thread count is ``count`` in the block; the caller's is restored after.

    For the thread that runs the work: torch also sets its process-wide counts (MKL, the thread pool new threads
    start from), so another thread starting torch work inside the block would start with ``count``.
    """
    caller = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(caller)


def loader_workers(device: torch.device, gpu_workers: int) -> int:
    """Default image-loading processes: ``gpu_workers`` feeding a GPU; none on the CPU, where the model already keeps
    every core busy and loader processes only take cores from it (2 cores, yolov3-tiny: training 19.3 images/s
    in-process vs 15.8 with 2 workers, coco128 evaluation 4.9 s vs 5.5 s; benchmarks/README.md)."""
    return gpu_workers if device.type == "cuda" else 0


# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_KEEP_FREED_BYTES = 1 << 30


def keep_freed_memory() -> bool:
    """Let glibc reuse freed tensor memory instead of returning it to the kernel; True when applied.

    PyTorch's CPU allocator is plain ``malloc``.  glibc serves every block above its mmap threshold (at most 32 MB)
    with a fresh ``mmap`` and unmaps it on free, so each training step page-faults its feature maps and gradients in
    again; zero-filling the max-pool gradients alone cost ~0.1 s per yolov3-tiny step.  Serving every block from
    the heap and keeping up to 1 GiB of freed memory makes steps 1.3-1.4x faster (float32 and bfloat16, measured in
    ``benchmarks/README.md``); the price is that the process keeps its peak memory.  Process-wide, so the batch
    commands (``detect``, ``map``, ``train``) call it, not the library; a no-op (False) where the C library is not
    glibc.
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _KEEP_FREED_BYTES))
    except (OSError, AttributeError):
        return False
