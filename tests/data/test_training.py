"""Training data pipeline: Darknet's multi-scale sizes, deterministic and resumable sampling, the collate format,
unreadable images at run time, and the DataLoader with workers."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from darknet_torch.config import parse_cfg_text, type_sections
from darknet_torch.data.augment import AugmentConfig
from darknet_torch.data.multiscale import MultiScale, _scaled_dim
from darknet_torch.data.report import data_report
from darknet_torch.data.training import (MAX_REPLACEMENTS, SampleRequest, TrainBatchSampler, TrainDataset,
                                         build_train_loader, collate_train)
from darknet_torch.errors import CfgError, DataError

NO_AUGMENT = AugmentConfig(jitter=0.0, flip=False)


def cfg_sections(net: str = "", yolo: str = "", classes: int = 80):
    text = (f"[net]\nbatch=4\nsubdivisions=2\nwidth=96\nheight=64\nchannels=3\nmax_batches=1000\n{net}\n"
            f"[yolo]\nclasses={classes}\nmask=0,1,2\nanchors=10,14, 23,27, 37,58\nnum=3\nrandom=1\n{yolo}\n")
    return type_sections(parse_cfg_text(text, "test.cfg"))


def requests_of(sampler: TrainBatchSampler, count: int) -> list[list[SampleRequest]]:
    stream = iter(sampler)
    return [next(stream) for _ in range(count)]


# ----------------------------------------------------------------------------------------------- multi-scale sizes

@pytest.mark.parametrize(("init", "scale", "step", "expected"), [
    (416, 1.0, 32, 448),          # roundl(13 + 1) * 32: Darknet's "+ 1" lifts even scale 1 one step
    (416, 1.4, 32, 608),          # roundl(18.2 + 1) = 19
    (416, 1 / 1.4, 32, 320),      # roundl(9.2857 + 1) = 10
    (304, 1.0, 32, 352),          # roundl(9.5 + 1): half rounds away from zero -> 11
    (608, 1.4, 32, 896),          # roundl(26.6 + 1) = 28
    (320, 1.4, 32, 480),          # roundl(14 + 1) = 15
    (416, 1.0, 64, 512),          # roundl(6.5 + 1) = 8
])
def test_darknet_resize_formula(init, scale, step, expected):
    assert _scaled_dim(init, np.float32(scale), step) == expected


def test_multiscale_sizes_follow_darknets_range_for_416():
    scales = MultiScale(416, 416, random=1.0, resize_step=32)
    assert scales.largest() == (608, 608)
    sizes = {scales.size_at(block * 10, seed=5) for block in range(1, 1500)}
    assert all(w == h for w, h in sizes)
    # up: roundl(416 s / 32 + 1) for s in [1, 1.4] -> 448..608; down: s in [1/1.4, 1] -> 320..448, and a downward draw
    # giving more than 416 falls back to 416
    assert {w for w, _ in sizes} == {320, 352, 384, 416, 448, 480, 512, 544, 576, 608}


def test_multiscale_first_block_and_last_100_iterations_use_the_largest_size():
    scales = MultiScale(416, 320, random=1.0, resize_step=32, max_batches=1000)
    assert scales.largest() == (608, 480)
    assert all(scales.size_at(i, seed=1) == (608, 480) for i in range(10))
    assert all(scales.size_at(i, seed=s) == (608, 480) for i in range(910, 1000) for s in range(5))
    assert len({scales.size_at(900, seed=s) for s in range(40)}) > 1  # 900 is not > 1000 - 100


def test_multiscale_float_random_is_the_scale_limit_and_zero_is_fixed():
    assert MultiScale(416, 416, random=2.0).largest() == (864, 864)  # roundl(2 * 13 + 1) * 32
    fixed = MultiScale(416, 288, random=0.0)
    assert {fixed.size_at(i, seed=3) for i in range(0, 500, 7)} == {(416, 288)}


def test_multiscale_rejects_a_resize_step_the_network_cannot_take():
    with pytest.raises(CfgError, match="resize_step=16 is not a multiple of the network stride 32"):
        MultiScale(416, 416, random=1.0, resize_step=16, stride=32)
    MultiScale(416, 416, random=1.0, resize_step=64, stride=32)


# ----------------------------------------------------------------------------------------------------- the sampler

def make_sampler(**overrides) -> TrainBatchSampler:
    args = dict(num_images=50, mini_batch=3, subdivisions=2, net_size=(416, 416), random=1.0, resize_step=32,
                stride=32, seed=11)
    args.update(overrides)
    return TrainBatchSampler(**args)


def test_sampler_structure_and_size_changes_every_10_iterations():
    batches = requests_of(make_sampler(), 2 * 200)
    assert all(len(batch) == 3 for batch in batches)
    sizes = [{(r.net_w, r.net_h) for r in batch} for batch in batches]
    assert all(len(size) == 1 for size in sizes)
    per_iteration = [sizes[2 * i] | sizes[2 * i + 1] for i in range(200)]
    assert all(len(size) == 1 for size in per_iteration)  # both mini-batches of an iteration share the size
    per_iteration = [size.pop() for size in per_iteration]
    for i in range(200):
        if i % 10:
            assert per_iteration[i] == per_iteration[i - 1]
    assert len(set(per_iteration)) > 3
    assert all(w % 32 == 0 and 320 <= w <= 608 for w, _ in per_iteration)
    indices = [r.index for batch in batches for r in batch]
    assert 0 <= min(indices) and max(indices) < 50 and len(set(indices)) == 50  # uniform over the list


def test_sampler_is_deterministic_and_resumes_exactly():
    full = requests_of(make_sampler(), 2 * 40)
    assert requests_of(make_sampler(), 2 * 40) == full
    for start in (1, 13, 20):
        resumed = requests_of(make_sampler(start_iteration=start), 2 * (40 - start))
        assert resumed == full[2 * start:]
    assert requests_of(make_sampler(seed=12), 2 * 40) != full


def test_sampler_ranks_share_sizes_and_get_disjoint_draws():
    ranks = [requests_of(make_sampler(rank=r, world_size=3), 2 * 30) for r in range(3)]
    for i in range(len(ranks[0])):
        assert len({(req.net_w, req.net_h) for rank in ranks for req in rank[i]}) == 1
    seeds = [{req.sample_seed for batch in rank for req in batch} for rank in ranks]
    assert all(len(s) == 2 * 30 * 3 for s in seeds)
    assert not (seeds[0] & seeds[1]) and not (seeds[0] & seeds[2]) and not (seeds[1] & seeds[2])
    with pytest.raises(ValueError, match="rank 3"):
        make_sampler(rank=3, world_size=3)


# ---------------------------------------------------------------------------------------------------------- collate

def test_collate_train_format():
    images = [torch.full((3, 4, 5), float(k)) for k in range(3)]
    labels = [torch.tensor([[1, 0.5, 0.5, 0.2, 0.1], [7, 0.1, 0.2, 0.3, 0.4]]), torch.zeros(0, 5),
              torch.tensor([[2, 0.9, 0.8, 0.05, 0.06]])]
    batch_images, targets = collate_train(list(zip(images, labels)))
    assert batch_images.shape == (3, 3, 4, 5) and batch_images[2].eq(2).all()
    expected = torch.tensor([[0, 1, 0.5, 0.5, 0.2, 0.1], [0, 7, 0.1, 0.2, 0.3, 0.4], [2, 2, 0.9, 0.8, 0.05, 0.06]])
    assert targets.dtype == torch.float32 and torch.equal(targets, expected)
    _, none = collate_train([(images[0], torch.zeros(0, 5))])
    assert none.shape == (0, 6)
    with pytest.raises(ValueError, match="one image size"):
        collate_train([(images[0], labels[1]), (torch.zeros(3, 8, 8), labels[1])])


# ---------------------------------------------------------------------------------------------------------- dataset

def write_dataset(root: Path, count: int, classes: int = 2) -> list[Path]:
    rng = np.random.default_rng(0)
    images = []
    for k in range(count):
        path = root / "images" / f"{k:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (40 + k, 60, 3), dtype=np.uint8)).save(path)
        path.with_suffix(".txt").write_text(f"{k % classes} 0.5 0.5 0.4 0.3\n{classes + 3} 0.5 0.5 0.4 0.3\n")
        images.append(path)
    return images


def test_dataset_sample_is_a_pure_function_of_the_request(coco128_dir):
    report = data_report(sorted((coco128_dir / "images" / "train2017").glob("*.jpg"))[:8], num_classes=80)
    cfg = AugmentConfig.from_cfg(*cfg_sections(net="hue=.1\nsaturation=1.5\nexposure=1.5\nmosaic=1",
                                               yolo="jitter=.3"))
    dataset = TrainDataset(report.image_paths, 80, cfg, seed=4, report=report)
    request = SampleRequest(3, 128, 96, 987654321)
    image, labels = dataset[request]
    assert image.shape == (3, 96, 128) and image.dtype == torch.float32
    assert 0 <= image.min() and image.max() <= 1
    assert labels.shape[1] == 5 and labels.dtype == torch.float32
    assert ((labels[:, 1:] >= 0) & (labels[:, 1:] <= 1)).all() and (labels[:, 0] < 80).all()
    torch.manual_seed(123); np.random.seed(123)  # no global RNG is involved
    again = TrainDataset(report.image_paths, 80, cfg, seed=4, report=report)[request]
    assert torch.equal(again[0], image) and torch.equal(again[1], labels)
    other = dataset[request._replace(sample_seed=987654322)]
    assert not torch.equal(other[0], image)


def test_dataset_labels_skip_bad_lines_with_and_without_report(tmp_path):
    images = write_dataset(tmp_path, 3)
    report = data_report(images, num_classes=2)
    assert report.skipped_lines == 3  # the class-5 line of each file, listed by the report
    lazy = TrainDataset(images, 2, NO_AUGMENT, seed=0)
    eager = TrainDataset(images, 2, NO_AUGMENT, seed=0, report=report)
    for k in range(3):
        expected = np.float32([[k % 2, 0.5, 0.5, 0.4, 0.3]])
        np.testing.assert_array_equal(lazy.labels_of(k), expected)
        np.testing.assert_array_equal(eager.labels_of(k), expected)
    _, labels = eager[SampleRequest(1, 64, 64, 5)]
    # no jitter, no flip: the one good box comes out unchanged
    torch.testing.assert_close(labels, torch.tensor([[1, 0.5, 0.5, 0.4, 0.3]]), atol=1e-6, rtol=0)


def test_dataset_labels_of_cwd_relative_entries_are_darknets(tmp_path, monkeypatch):
    """Without a report, labels_of looks where Darknet does for ``images/train2017/a.png`` run from the cwd: beside
    the image (the relative text has no ``/images/train2017/`` to substitute)."""
    monkeypatch.chdir(tmp_path)
    image = tmp_path / "images" / "train2017" / "a.png"
    image.parent.mkdir(parents=True)
    Image.new("RGB", (32, 32)).save(image)
    image.with_suffix(".txt").write_text("1 0.5 0.5 0.4 0.3\n")
    dataset = TrainDataset([image], 2, NO_AUGMENT, seed=0)
    np.testing.assert_array_equal(dataset.labels_of(0), np.float32([[1, 0.5, 0.5, 0.4, 0.3]]))


def test_unreadable_image_is_replaced_deterministically_and_logged_once(tmp_path, caplog):
    images = write_dataset(tmp_path, 4)
    images[2].write_bytes(b"\x89PNG\r\n\x1a\n not really")  # exists (passes the report) but cannot be decoded
    dataset = TrainDataset(images, 2, NO_AUGMENT, seed=9)
    request = SampleRequest(2, 64, 64, 77)
    with caplog.at_level(logging.WARNING):
        first = dataset[request]
        second = dataset[request]
    warnings = [record.getMessage() for record in caplog.records if str(images[2]) in record.getMessage()]
    assert len(warnings) == 1 and "training goes on with other images" in warnings[0]
    fresh = TrainDataset(images, 2, NO_AUGMENT, seed=9)[request]  # does not know the file is bad: same replacement
    for sample in (second, fresh):
        assert torch.equal(sample[0], first[0]) and torch.equal(sample[1], first[1])


def test_all_images_unreadable_is_a_data_error(tmp_path):
    images = write_dataset(tmp_path, 2)
    for image in images:
        image.write_bytes(b"junk")
    with pytest.raises(DataError, match=f"{MAX_REPLACEMENTS + 1} unreadable training images in a row"):
        TrainDataset(images, 2, NO_AUGMENT, seed=0)[SampleRequest(0, 32, 32, 1)]


# ------------------------------------------------------------------------------------------------------ the loader

def take(loader, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    stream = iter(loader)
    return [next(stream) for _ in range(count)]


def test_loader_with_workers_yields_batches_and_resumes_exactly(coco128_dir):
    net, *heads = cfg_sections(net="hue=.1\nsaturation=1.5\nexposure=1.5\nflip=1\nmosaic=1", yolo="jitter=.3")
    data = coco128_dir / "coco128.data"
    parallel = build_train_loader(data, net, heads, workers=2, seed=21, start_iteration=0)
    batches = take(parallel, 2 * 4)  # 4 iterations of 2 mini-batches of 2 images
    for images, targets in batches:
        # first 10 iterations: the largest size, roundl(1.4 * (96, 64) / 32 + 1) * 32 = (160, 128)
        assert images.shape == (2, 3, 128, 160) and images.dtype == torch.float32
        assert targets.shape[1] == 6 and set(targets[:, 0].tolist()) <= {0.0, 1.0}
        assert ((targets[:, 2:] >= 0) & (targets[:, 2:] <= 1)).all()
    assert sum(len(targets) for _, targets in batches) > 0
    assert parallel.dataset.augment_cfg == AugmentConfig(jitter=0.3, hue=0.1, saturation=1.5, exposure=1.5,
                                                         mosaic=True)
    # resumed at iteration 2, with another worker count: the same batches, bit for bit (workers run torch
    # single-threaded; in-process loading may differ in the last float bit with several torch threads)
    resumed = build_train_loader(data, net, heads, workers=1, seed=21, start_iteration=2)
    for (images, targets), (expected_images, expected_targets) in zip(take(resumed, 4), batches[4:]):
        assert torch.equal(images, expected_images) and torch.equal(targets, expected_targets)


def test_loader_rejects_bad_configurations(coco128_dir, tmp_path):
    data = coco128_dir / "coco128.data"
    net, *heads = cfg_sections(net="dynamic_minibatch=1")
    with pytest.raises(CfgError, match="dynamic_minibatch=1 is not supported"):
        build_train_loader(data, net, heads, workers=0, seed=0)
    net, *heads = cfg_sections(classes=3)
    with pytest.raises(CfgError, match="classes=80, but the cfg's last detection layer has classes=3"):
        build_train_loader(data, net, heads, workers=0, seed=0)
    net, *heads = cfg_sections()
    with pytest.raises(CfgError, match="no \\[yolo\\]/\\[region\\] layer"):
        build_train_loader(data, net, [], workers=0, seed=0)
    missing = tmp_path / "missing.data"
    missing.write_text("classes = 80\ntrain = /nonexistent/train.txt\n")
    with pytest.raises(DataError, match="train = /nonexistent/train.txt: image list not found"):
        build_train_loader(missing, net, heads, workers=0, seed=0)
