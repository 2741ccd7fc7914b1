"""Out-of-range arguments are usage errors from argparse: exit 2 with one ``error:`` line naming the option, before
any file is read or model loaded (the files named here do not exist), and never a traceback."""
from __future__ import annotations

import pytest

from darknet_torch.cli.detector import translate
from darknet_torch.cli.main import COMMANDS, main

FILES = ["--cfg", "missing.cfg", "--weights", "missing.weights"]
DATA = ["--data", "missing.data", "--cfg", "missing.cfg"]

# id, argv, fragment of the error line
CASES = [
    ("detect_batch_size_0", ["detect", "x.jpg", *FILES, "--batch-size", "0"], "--batch-size: must be >= 1, got 0"),
    ("detect_workers_negative", ["detect", "x.jpg", *FILES, "--workers", "-1"], "--workers: must be >= 0, got -1"),
    ("detect_thresh_above_1", ["detect", "x.jpg", *FILES, "--thresh", "1.5"], "must be in [0, 1], got 1.5"),
    ("detect_thresh_nan", ["detect", "x.jpg", *FILES, "--thresh", "nan"], "must be in [0, 1], got nan"),
    ("detect_nms_negative", ["detect", "x.jpg", *FILES, "--nms", "-0.1"], "--nms/--iou-thres: must be in [0, 1]"),
    ("detect_darknet_thresh", ["detect", "x.jpg", *FILES, "-thresh", "2"], "--thresh/--conf-thres: must be in"),
    ("detector_test_darknet_thresh", ["detector", "test", "x.data", "x.cfg", "x.weights", "x.jpg", "-thresh", "2"],
     "--thresh/--conf-thres: must be in [0, 1], got 2"),
    ("detect_img_size_3_values", ["detect", "x.jpg", *FILES, "--img-size", "96", "128", "160"],
     "--img-size: takes H or H W, got 3 values"),
    ("detect_img_size_0", ["detect", "x.jpg", *FILES, "--img-size", "0"], "--img-size: must be >= 1, got 0"),
    ("map_batch_size_0", ["map", *DATA, "--batch-size", "0"], "--batch-size: must be >= 1, got 0"),
    ("map_workers_negative", ["map", *DATA, "--workers", "-1"], "--workers: must be >= 0, got -1"),
    ("map_darknet_thresh", ["map", *DATA, "-thresh", "3"], "--thresh/-thresh: must be in [0, 1], got 3"),
    ("map_det_thresh", ["map", *DATA, "--det-thresh", "3"], "--det-thresh: must be in [0, 1], got 3"),
    ("map_iou_thresh_1", ["map", *DATA, "--iou-thresh", "1"], "must be in [0, 1), got 1"),
    ("map_points_1", ["map", *DATA, "--points", "1"], "--points/-points: must be 0 or >= 2"),
    ("export_batch_size_0", ["export", *FILES, "--batch-size", "0"], "--batch-size: must be >= 1, got 0"),
    ("export_nms_thresh", ["export", *FILES, "--nms", "--nms-thresh", "3"], "--nms-thresh: must be in [0, 1]"),
    ("export_thresh", ["export", *FILES, "--nms", "--thresh", "-1"], "--thresh: must be in [0, 1], got -1"),
    ("export_img_size_3_values", ["export", *FILES, "--img-size", "1", "2", "3"], "takes H or H W, got 3 values"),
    ("demo_batch_size_0", ["demo", "x.mp4", *FILES, "--batch-size", "0"], "--batch-size: must be >= 1, got 0"),
    ("demo_avgframes_0", ["demo", "x.mp4", *FILES, "-avgframes", "0"], "--avgframes/-avgframes: must be >= 1"),
    ("demo_thresh", ["demo", "x.mp4", *FILES, "--thresh", "3"], "--thresh/--conf-thres: must be in [0, 1]"),
    ("demo_fps_0", ["demo", "x.mp4", *FILES, "--fps", "0"], "--fps: must be in (0, inf], got 0"),
    ("demo_fps_negative", ["demo", "x.mp4", *FILES, "--fps", "-5"], "--fps: must be in (0, inf], got -5"),
    ("demo_max_frames_negative", ["demo", "x.mp4", *FILES, "--max-frames", "-1"], "--max-frames: must be >= 1"),
    ("demo_max_frames_0", ["demo", "x.mp4", *FILES, "--max-frames", "0"], "--max-frames: must be >= 1, got 0"),
    ("demo_retries_negative", ["demo", "x.mp4", *FILES, "--retries", "-1"], "--retries: must be >= 0, got -1"),
    ("demo_camera_negative", ["demo", *FILES, "-c", "-1"], "-c/--camera: must be >= 0, got -1"),
    ("demo_mjpeg_port", ["demo", "x.mp4", *FILES, "-mjpeg_port", "99999"], "must be from 1 to 65535, got 99999"),
    ("demo_json_port", ["demo", "x.mp4", *FILES, "--json-port", "0"], "must be from 1 to 65535, got 0"),
    ("serve_thresh", ["serve", *FILES, "--thresh", "3"], "--thresh/--conf-thres: must be in [0, 1], got 3"),
    ("serve_port_too_high", ["serve", *FILES, "--port", "99999"], "--port: must be from 1 to 65535, got 99999"),
    ("serve_port_negative", ["serve", *FILES, "--port", "-1"], "--port: must be from 1 to 65535, got -1"),
    ("serve_threads_0", ["serve", *FILES, "--threads", "0"], "--threads: must be >= 1, got 0"),
    ("serve_batch_wait_negative", ["serve", *FILES, "--batch-wait-ms", "-1"], "--batch-wait-ms: must be in [0, inf]"),
    ("serve_timeout_0", ["serve", *FILES, "--timeout", "0"], "--timeout: must be in (0, inf], got 0"),
    ("serve_max_response_kb_1", ["serve", *FILES, "--max-response-kb", "1"], "--max-response-kb: must be >= 4"),
    ("train_workers_negative", ["train", *DATA, "--workers", "-1"], "--workers: must be >= 0, got -1"),
    ("train_map_every_0", ["train", *DATA, "--map-every", "0"], "--map-every: must be >= 1, got 0"),
    ("train_log_every_0", ["train", *DATA, "--log-every", "0"], "--log-every: must be >= 1, got 0"),
    ("train_show_imgs_negative", ["train", *DATA, "--show-imgs", "-2"], "--show-imgs: must be >= 0, got -2"),
    ("train_ema_alpha_1", ["train", *DATA, "--ema-alpha", "1"], "--ema-alpha: must be in (0, 1), got 1"),
    ("train_sparsity_negative", ["train", *DATA, "--sparsity", "-0.1"], "--sparsity: must be in [0, inf]"),
    ("train_seed_negative", ["train", *DATA, "--seed", "-1"], "--seed: must be >= 0, got -1"),
    ("prune_ratio_1", ["prune", *FILES, "-o", "x", "--ratio", "1"], "--ratio: must be in [0, 1), got 1"),
    ("prune_threshold_negative", ["prune", *FILES, "-o", "x", "--threshold", "-1"], "--threshold: must be in [0,"),
    ("prune_min_channels_0", ["prune", *FILES, "-o", "x", "--ratio", ".5", "--min-channels", "0"], "must be >= 1"),
    ("calc_anchors_width_0", ["calc_anchors", "--data", "x.data", "--width", "0", "--height", "32"],
     "--width: must be >= 1, got 0"),
    ("calc_anchors_seed_negative", ["calc_anchors", "--data", "x.data", "--width", "32", "--height", "32", "--seed",
                                    "-1"], "--seed: must be >= 0, got -1"),
    ("custom_cfg_classes_0", ["custom-cfg", "--cfg", "x.cfg", "--output", "y.cfg", "--classes", "0"],
     "--classes: must be >= 1, got 0"),
    ("classify_top_0", ["classify", "x.jpg", "--cfg", "x.cfg", "--top", "0"], "--top: must be >= 1, got 0"),
    ("classifier_darknet_t_0", ["classifier", "predict", "x.data", "x.cfg", "x.weights", "x.jpg", "-t", "0"],
     "--top: must be >= 1, got 0"),
    ("export_opset", ["export", *FILES, "--opset", "5"], "--opset: must be from "),
    ("export_max_per_class_0", ["export", *FILES, "--max-per-class", "0"], "--max-per-class: must be >= 1, got 0"),
    ("not_a_number", ["detect", "x.jpg", *FILES, "--batch-size", "four"], "expected an integer, got 'four'"),
]


@pytest.mark.parametrize("argv, fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_out_of_range_argument_is_a_usage_error(argv, fragment, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    out, err = capsys.readouterr()
    assert exited.value.code == 2
    assert fragment in err and "error: argument" in err, err
    assert "Traceback" not in err and not out


@pytest.mark.parametrize("argv, expected", [
    (["detect", "x.jpg", "--img-size", "96"], (96, 96)),
    (["detect", "x.jpg", "--img-size", "96", "128"], (96, 128)),
    (["detect", "x.jpg"], None),
    (["export", *FILES, "--img-size", "64", "96"], (64, 96)),
])
def test_img_size_is_height_width(argv, expected):
    from darknet_torch.cli.main import build_parser

    assert build_parser().parse_args(argv).img_size == expected


@pytest.mark.parametrize("argv, fast", [
    (["detect", "x.jpg"], "auto"),
    (["map", *DATA, "--weights", "w"], None),  # map prints Darknet's digits with the plain model
    (["map", *DATA, "--weights", "w", "--fast", "auto"], "auto"),
    (["serve", *FILES], "auto"),
    (["demo", *FILES], "auto"),
    (["detect", "x.jpg", "--fast", "none"], None),
    (["detect", "x.jpg", "--fast", "exact"], "exact"),
    (["export", *FILES], None),  # export writes the plain model's graph
    # Darknet's command lines, as cli/detector.py translates them
    (translate("test", ["x.data", "x.cfg", "x.weights", "x.jpg"], COMMANDS), "auto"),
    (translate("demo", ["x.data", "x.cfg", "x.weights", "x.mp4"], COMMANDS), "auto"),
    (translate("map", ["x.data", "x.cfg", "x.weights"], COMMANDS), None),
])
def test_commands_default_to_the_auto_fast_mode_map_to_the_plain_model(argv, fast):
    from darknet_torch.cli.main import build_parser
    from darknet_torch.cli.options import inference_settings
    from darknet_torch.detect.settings import DETECTOR_TEST

    assert inference_settings(build_parser().parse_args(argv), DETECTOR_TEST).fast == fast


@pytest.mark.parametrize("argv, line", [
    (["detect", "--batch-size", "0"],
     "darknet_torch detect: error: argument --batch-size: must be >= 1, got 0 (see darknet_torch detect --help)"),
    (["summary"], "darknet_torch summary: error: the following arguments are required: --cfg "
                  "(see darknet_torch summary --help)"),
    ([], "darknet_torch: error: the following arguments are required: command (see darknet_torch --help)"),
])
def test_usage_errors_are_one_line(argv, line, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2 and capsys.readouterr().err == line + "\n"  # no usage block above it
