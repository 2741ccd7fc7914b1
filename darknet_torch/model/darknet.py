"""The ``Darknet`` module: a cfg file's network as one generic forward loop."""
from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import torch
from torch import Tensor, nn

from darknet_torch.config import Section, load_cfg
from darknet_torch.config.net import NetSettings
from darknet_torch.errors import DarknetError
from darknet_torch.model.builder import create_modules
from darknet_torch.model.heads import HEAD_TYPES
from darknet_torch.model.losses import head_loss
from darknet_torch.model.layers.conv import ConvBlock
from darknet_torch.model.layers.pooling import MaxPool, MaxPoolDepth
from darknet_torch.model.layers.reshape import Reorg3d, ReorgOld, Upsample
from darknet_torch.model.layers.routing import Route, Sam, ScaleChannels, Shortcut
from darknet_torch.model.layers.simple import ActivationLayer, Identity
from darknet_torch.model.weights import LoadSkips, WeightsHeader, load_darknet_weights, save_darknet_weights
from darknet_torch.openmp import waits_passively
from darknet_torch.runtime import model_device, torch_threads

#: Activations computed with correctly rounded operations (compare, multiply) on every code path.  ATen computes an
#: element-wise op in SIMD blocks and each thread's last few values one at a time; for exp-based activations
#: (logistic, mish, swish, tanh, ...) the two paths use different exp implementations that can differ by an ulp,
#: and which values take which path depends on the thread count (yolov3-tiny's YOLO heads: 2e-10 apart).
EXACT_ACTIVATIONS = frozenset({"linear", "relu", "leaky"})
#: Layers run on one thread under passive waiting only while their inputs hold at most this many values (a batch of
#: 8 at 416 is worth two threads in its first layers: one thread lost more than the wake-ups cost, exact
#: 856 -> 921 ms with 2 busy processes).
SERIAL_MAX_VALUES = 1 << 22


def same_bits_on_one_thread(module: nn.Module) -> bool:
    """Whether ``module`` computes every output bit the same on any thread count: maxima, copies, and sums or
    products with an :data:`EXACT_ACTIVATIONS` activation (their operations are correctly rounded on every path)."""
    if isinstance(module, (Identity, MaxPool, MaxPoolDepth, Reorg3d, ReorgOld, Route)):
        return True
    if isinstance(module, Upsample):
        return module.stride > 0  # a negative stride sums blocks (avg_pool2d)
    if isinstance(module, (ActivationLayer, Sam, ScaleChannels, Shortcut)):
        return module.act.name in EXACT_ACTIVATIONS
    return False


class Darknet(nn.Module):
    """A Darknet network built from a ``.cfg`` file.

    >>> model = Darknet("cfg/yolov3-tiny.cfg")          # doctest: +SKIP
    >>> model.load_darknet_weights("weights/yolov3-tiny.weights")
    >>> out = model.eval()(torch.rand(1, 3, 416, 416))   # (1, N, 5+C)

    ``forward(x)`` takes ``x``: float ``B x 3 x H x W``, RGB in [0, 1] and returns ``B x N x (5+C)``: cx, cy, w, h in
    input pixels, objectness, class probabilities; heads in cfg order, within a head row ``anchor*H*W + row*W + col``.
    ``forward(x, targets)`` returns ``(loss, outputs)`` as in the classic PyTorch-YOLOv3 training flow.
    A cfg without detection heads (a classifier) returns Darknet's network output instead: ``B x N``, the last
    layer's values (``[cost]`` passes its input on), e.g. the softmax probabilities.
    """

    def __init__(self, cfg: str | Path | list[Section]) -> None:
        super().__init__()
        sections = cfg if isinstance(cfg, list) else load_cfg(cfg)
        self.cfg_path = None if isinstance(cfg, list) else Path(cfg)
        self.hyperparams: Section = sections[0]
        self.net = NetSettings.of(sections[0])  # [net] interpreted once, for training, data and inference
        self.module_defs: list[Section] = sections[1:]
        self.module_list, self.layer_infos = create_modules(sections)
        self.head_indices = [i for i, m in enumerate(self.module_list) if isinstance(m, HEAD_TYPES)]
        needed = {s for m in self.module_list for s in getattr(m, "sources", ())}
        # Heads and their inputs (the loss takes both, for exact gradients) stay available after the loop.
        self._keep = frozenset(needed) | frozenset(self.head_indices) | frozenset(i - 1 for i in self.head_indices) \
            | {len(self.module_list) - 1}
        self.header = WeightsHeader()

    # ----------------------------------------------------------------------------------------------- properties
    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) of the network input as the cfg's ``[net]`` sets it."""
        return self.net.input_size

    def check_rgb_input(self, what: str) -> None:
        """Refuse a cfg whose ``[net] channels`` is not 3 before ``what`` feeds it images: every image path here
        decodes RGB, while Darknet loads ``channels`` planes (e.g. stb's luma for 1); a grayscale model would
        otherwise fail deep inside the first convolution on every image."""
        if self.net.channels != 3:
            raise self.net.error(f"channels={self.net.channels}: {what} feeds the network 3-channel RGB images; "
                                 f"darknet_torch runs only channels=3 cfgs on images (Darknet would load "
                                 f"{self.net.channels}-channel images; grayscale input is not implemented)",
                                 "channels")

    @property
    def heads(self) -> list[nn.Module]:
        return [self.module_list[i] for i in self.head_indices]

    @property
    def num_classes(self) -> int:
        return self.heads[0].num_classes if self.head_indices else 0

    @property
    def seen(self) -> int:
        """Images seen in training, as stored in the ``.weights`` header."""
        return self.header.seen

    @property
    def stride(self) -> int:
        """The largest head stride (input pixels per grid cell): input sizes must be multiples of it."""
        net_h, _ = self.input_size
        return max((net_h // grid_h for _, grid_h, _ in self.head_grids()), default=1)

    def head_grids(self, input_hw: tuple[int, int] | None = None) -> list[tuple[int, int, int]]:
        """(anchors, H, W) of every head for an input of ``input_hw`` (default: the cfg size)."""
        net_h, net_w = self.input_size
        in_h, in_w = input_hw or (net_h, net_w)
        grids = []
        for i in self.head_indices:
            _, h, w = self.layer_infos[i].out_shape
            grids.append((self.module_list[i].num_anchors, in_h * h // net_h, in_w * w // net_w))
        return grids

    def layer_labels(self) -> list[str]:
        """``cfg:line [section]`` for every layer, used in messages."""
        return [f"{info.section.where()}" for info in self.layer_infos]

    # ----------------------------------------------------------------------------------------------- forward
    def _run(self, x: Tensor, keep_all: bool = False, serial: frozenset[int] = frozenset()) -> list[Tensor | None]:
        """Run every layer, those in ``serial`` on one thread; returns each layer's output (only those still needed
        unless ``keep_all``)."""
        outputs: list[Tensor | None] = []
        keep = self._keep
        for index, module in enumerate(self.module_list):
            sources = getattr(module, "sources", None)
            refs = [outputs[i] for i in sources] if sources is not None else None
            one_thread = index in serial and x.numel() + sum(r.numel() for r in refs or ()) <= SERIAL_MAX_VALUES
            with torch_threads(1) if one_thread else nullcontext():
                x = module(x, refs) if refs is not None else module(x)
            outputs.append(x if keep_all or index in keep else None)
        return outputs

    def serial_layers(self) -> frozenset[int]:
        """Layers an inference forward runs on one thread when libgomp waits passively (a busy machine).

        Each parallel region first wakes the sleeping OpenMP threads and ends in a barrier that waits for the last
        of them; with other processes on the cores a woken thread can wait a scheduler slice for a core.  For a
        convolution that wait is small beside its work; a max-pool takes a fraction of a millisecond, and under load
        took 3-4 ms that way.  Only layers whose outputs are bit for bit the same on one thread
        (:func:`same_bits_on_one_thread`), and only while their inputs hold at most :data:`SERIAL_MAX_VALUES`
        values.  None on a GPU, when training, tracing or compiling, with spin-waiting threads (a quiet machine) or
        one thread.
        """
        if self.training or torch.jit.is_tracing() or torch.compiler.is_compiling():
            return frozenset()
        if not waits_passively() or torch.get_num_threads() == 1 or model_device(self).type != "cpu":
            return frozenset()
        return frozenset(i for i, m in enumerate(self.module_list) if same_bits_on_one_thread(m))

    def forward(self, x: Tensor, targets: Tensor | None = None):
        serial = self.serial_layers()
        outputs = self._run(x, serial=serial)
        if not self.head_indices:  # a classifier: Darknet's network output, the last layer's values per image
            if targets is not None:
                raise DarknetError("this cfg has no [yolo] head: only detectors can be trained")
            return outputs[-1].flatten(1)
        net_hw = (x.shape[2], x.shape[3])
        decoded = torch.cat([self.module_list[i].decode(outputs[i], net_hw) for i in self.head_indices], dim=1)
        if targets is None:
            return decoded
        loss, _ = self._loss(outputs, targets, net_hw)
        return loss, decoded

    def compute_loss(self, x: Tensor, targets: Tensor) -> tuple[Tensor, list[dict[str, Tensor]]]:
        """Darknet's training loss summed over heads and images, and each head's detached logging parts.

        ``targets``: ``(T, 6)`` rows ``[batch_index, class, cx, cy, w, h]``, coordinates relative to ``x``.
        """
        return self._loss(self._run(x), targets, (x.shape[2], x.shape[3]))

    def _loss(self, outputs: list[Tensor | None], targets: Tensor,
              net_hw: tuple[int, int]) -> tuple[Tensor, list[dict[str, Tensor]]]:
        results = []
        for i in self.head_indices:
            head = self.module_list[i]
            loss = head_loss(head, self.layer_infos[i].section.where())
            results.append(loss(head, outputs[i], targets, net_hw, outputs[i - 1]))
        return torch.stack([loss for loss, _ in results]).sum(), [parts for _, parts in results]

    def forward_layers(self, x: Tensor) -> list[Tensor]:
        """Every layer's output, in Darknet's layer order (for debugging and layer-by-layer parity tests)."""
        return self._run(x, keep_all=True)

    def head_outputs(self, x: Tensor) -> list[Tensor]:
        """The heads' activated maps (Darknet's ``l.output`` of each ``[yolo]``/``[region]`` layer)."""
        outputs = self._run(x)
        return [outputs[i] for i in self.head_indices]

    # ----------------------------------------------------------------------------------------------- weights
    def load_darknet_weights(self, path: str | Path, cutoff: int | None = None, partial: bool = False) -> "Darknet":
        """Load an original Darknet ``.weights`` file; see :func:`darknet_torch.model.weights.load_darknet_weights`."""
        self.header = load_darknet_weights(self.module_list, self.layer_labels(), path, cutoff, partial,
                                           self.load_skips())
        return self

    def load_skips(self) -> LoadSkips:
        """The cfg's ``dontload=1`` layers and ``dontloadscales=1`` layers (a ``[batchnorm]`` section reads its scales
        regardless, as Darknet's load_batchnorm_weights)."""
        def marked(key: str) -> frozenset[int]:
            return frozenset(info.index for info in self.layer_infos if info.section.get(key))

        standalone = frozenset(info.index for info in self.layer_infos if info.section.name == "batchnorm")
        return LoadSkips(marked("dontload"), marked("dontloadscales") - standalone)

    def save_darknet_weights(self, path: str | Path, cutoff: int | None = None) -> None:
        """Write Darknet's ``.weights`` format (loadable by the C Darknet), keeping the loaded header and ``seen``."""
        save_darknet_weights(self.module_list, self.layer_labels(), path, self.header, cutoff)

    # ----------------------------------------------------------------------------------------------- inference
    def fuse(self) -> "Darknet":
        """Fold batch norm into the convolutions for inference (Darknet's ``fuse_conv_batchnorm``)."""
        for module in self.modules():
            if isinstance(module, ConvBlock):
                module.fuse()
        return self

    def unfuse(self) -> None:
        for module in self.modules():
            if isinstance(module, ConvBlock):
                module.unfuse()

    def extra_repr(self) -> str:
        h, w = self.input_size
        return f"cfg={self.cfg_path}, input={w}x{h}, layers={len(self.module_list)}, heads={self.head_indices}"

