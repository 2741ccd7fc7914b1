"""``darknet_torch serve``: an HTTP prediction service for one model (``POST /predict``, ``GET /health``, ``GET /``).

Binds to 127.0.0.1 unless ``--host`` says otherwise.  Exit status 2 for a usage or configuration error (bad cfg,
missing weights, the ``serve`` extra not installed, an address that cannot be listened on), reported before the
server starts (the address is bound before the model loads).
"""
from __future__ import annotations

import argparse
import ipaddress
import logging
import socket

import torch

from darknet_torch.cli.detect import DEFAULT_CFG, DEFAULT_SOURCE, DEFAULT_WEIGHTS, resolve_names
from darknet_torch.cli.options import (add_detection_options, add_fast_argument, inference_settings, int_at_least,
                                       non_negative_float, port_number, positive_float, positive_int)
from darknet_torch.detect.build import build_predictor, load_for_inference
from darknet_torch.detect.settings import DETECTOR_TEST
from darknet_torch.detect.sources import expand_sources
from darknet_torch.errors import DarknetError
from darknet_torch.runtime import select_device

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="HTTP prediction service (needs the 'serve' extra)",
                       description="Serve one model over HTTP: POST /predict (multipart field 'image' or raw image "
                                   "bytes; optional thresh, nms, letter_box) returns JSON detections; GET /health; "
                                   "GET / is an upload page.")
    p.add_argument("--cfg", default=DEFAULT_CFG, help="Darknet .cfg (default: %(default)s)")
    p.add_argument("--weights", default=DEFAULT_WEIGHTS, help="Darknet .weights or darknet_torch .pt "
                   "(default: %(default)s)")
    names = p.add_mutually_exclusive_group()
    names.add_argument("--names", help="class names, one per line (default: data/coco.names for 80-class models)")
    names.add_argument("--data", help="Darknet .data file; its names= entry gives the class names")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default: %(default)s, this machine only; 0.0.0.0 exposes the service)")
    p.add_argument("--port", type=port_number, default=8000, help="TCP port (default: %(default)s)")
    add_detection_options(p, DETECTOR_TEST)  # the defaults of requests that name no settings
    p.add_argument("--letter-box", action=argparse.BooleanOptionalAction, default=None,
                   help="default letterbox setting (default: [net] letter_box)")
    p.add_argument("--decoder", choices=("auto", "pil", "stb"), default="pil",
                   help="image decoder (default: %(default)s, which refuses truncated files); stb = Darknet's own "
                        "(needs libstb; exact pixels, but decodes a truncated JPEG as Darknet does, grey-filled)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or N (default: cuda if available)")
    p.add_argument("--threads", type=positive_int,
                   help="torch CPU threads for the model (default: torch's, one per core)")
    add_fast_argument(p)
    p.add_argument("--calibration", default=DEFAULT_SOURCE,
                   help="images to calibrate --fast int8 on: file, folder, list or glob (default: %(default)s)")
    p.add_argument("--max-batch", type=positive_int, default=4, help="images per forward pass (default: %(default)s)")
    p.add_argument("--batch-wait-ms", type=non_negative_float, default=0.0,
                   help="wait up to this long for a batch to fill (default: 0, take what is queued)")
    p.add_argument("--queue-size", type=positive_int, default=32,
                   help="requests that may wait for the model; beyond it 503 (default: %(default)s)")
    p.add_argument("--timeout", type=positive_float, default=30.0,
                   help="seconds from a request's arrival to its answer; else 408/504 (default: %(default)s)")
    p.add_argument("--max-upload-mb", type=positive_float, default=16.0,
                   help="request body cap in MiB; larger uploads get 413 (default: %(default)s)")
    p.add_argument("--max-pixels", type=positive_int, default=50_000_000,
                   help="decoded image size cap, the decompression-bomb guard (default: %(default)s)")
    p.add_argument("--max-connections", type=positive_int, default=128,
                   help="open connections; idle ones are closed to make room for new ones, and only when all are "
                        "running requests is the answer 503 (default: %(default)s)")
    p.add_argument("--header-timeout", type=positive_float, default=10.0,
                   help="seconds for a request head to arrive on a connection, else it is closed (default: "
                        "%(default)s)")
    p.add_argument("--max-detections", type=positive_int, default=1000,
                   help="(box, class) pairs per image, the highest scores kept (default: %(default)s)")
    p.add_argument("--max-response-kb", type=int_at_least(4), default=1024,
                   help="response body cap in KiB, at least 4 (an answer without detections needs about 0.3); the "
                        "lowest scores are left out beyond it (default: %(default)s)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from darknet_torch.serve.app import ServeConfig, create_app
        from darknet_torch.serve.connections import uvicorn_options
    except ImportError as exc:
        raise DarknetError(f"serve needs the optional 'serve' extra ({exc.name} is missing): "
                           "pip install 'darknet_torch[serve]'") from None
    settings = inference_settings(args, DETECTOR_TEST)
    config = ServeConfig(max_upload_bytes=int(args.max_upload_mb * 2**20), max_pixels=args.max_pixels,
                         queue_size=args.queue_size, max_batch=args.max_batch, batch_wait=args.batch_wait_ms / 1000,
                         timeout=args.timeout, decoder=args.decoder, max_detections=args.max_detections,
                         max_response_bytes=args.max_response_kb * 1024, header_timeout=args.header_timeout,
                         max_connections=args.max_connections)
    sock = listening_socket(args.host, args.port)  # before the model loads: a taken port fails at once
    try:
        if args.threads is not None:
            torch.set_num_threads(args.threads)
        model, settings = load_for_inference(args.cfg, args.weights, select_device(args.device), settings)
        calibration = expand_sources([args.calibration]) if settings.fast == "int8" else []
        predictor = build_predictor(model, settings, names=resolve_names(args, model.num_classes),
                                    calibration=calibration)
        del model  # a --fast predictor runs a copy: keeping the original would hold its weights twice
        if not _is_loopback(args.host):
            log.warning("binding to %s: the service is reachable from other machines (no authentication)", args.host)
        log.info("serving %s (%s) with %d torch thread(s), batches of up to %d, queue of %d", args.cfg,
                 f"fast mode {predictor.settings.fast}" if predictor.settings.fast else "plain model",
                 torch.get_num_threads(), config.max_batch, config.queue_size)
        server = uvicorn.Server(uvicorn.Config(create_app(predictor, config, model_name=str(args.cfg)),
                                               host=args.host, port=args.port, log_level="info",
                                               **uvicorn_options(config)))
        log.info("listening on http://%s:%d/ (Ctrl-C to stop)", f"[{args.host}]" if ":" in args.host else args.host,
                 args.port)
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0 if server.started else 1


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` as uvicorn binds one (IPv6 for a host with ':'), for ``Server.run``.

    Raises:
        DarknetError: the address is in use, not this machine's, or not resolvable (one line naming it).
    """
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise DarknetError(f"--host {host} --port {port}: cannot listen there ({exc.strerror or exc})") from None
    return sock


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
