"""calc_anchors: Darknet's k-means on label sizes (hand-made cases, a loop transcription of src/matrix.c's
do_kmeans as oracle) and the real coco128 labels."""
from __future__ import annotations

import numpy as np
import pytest

from darknet_torch.cli.main import main
from darknet_torch.errors import CfgError, DataError
from darknet_torch.evaluate.anchors import format_anchors, kmeans_anchors, load_label_sizes, wh_iou

YOLOV3_ANCHORS = np.array([10, 13, 16, 30, 33, 23, 30, 61, 62, 45, 59, 119, 116, 90, 156, 198, 373, 326],
                          np.float32).reshape(-1, 2)


def test_one_cluster_is_the_mean_box_with_hand_computed_iou():
    result = kmeans_anchors([[10, 10], [10, 20]], 1, seed=0)
    np.testing.assert_array_equal(result.anchors, [[10, 15]])
    # IoU((10,10),(10,15)) = 100/150, IoU((10,20),(10,15)) = 150/200
    assert result.avg_iou == pytest.approx((2 / 3 + 3 / 4) / 2, abs=1e-7)
    assert result.iterations == 0
    assert format_anchors(result.anchors, 416) == "anchors =  10, 15"


def _three_groups() -> tuple[np.ndarray, np.ndarray]:
    """Three far-apart groups; each is its centre +-2 in w or h, so its mean is exactly the centre."""
    centres = np.array([[300, 200], [12, 10], [60, 120]], np.float32)
    offsets = np.array([[0, 0], [2, 0], [-2, 0], [0, 2], [0, -2]], np.float32)
    boxes = (centres[:, None, :] + offsets[None, :, :]).reshape(-1, 2)
    return boxes, np.repeat(np.arange(3), len(offsets))


def test_three_obvious_clusters_give_their_centres_sorted_by_area():
    boxes, group = _three_groups()
    good_starts = 0
    for seed in range(20):
        # Darknet's random_centers: the first k boxes of a random permutation (documented seeding contract)
        start = np.random.default_rng(seed).permutation(len(boxes))[:3]
        if len(set(group[start])) < 3:
            continue  # two starts in one group: k-means stays in that local optimum, in Darknet too
        good_starts += 1
        result = kmeans_anchors(boxes, 3, seed=seed)
        np.testing.assert_array_equal(result.anchors, [[12, 10], [60, 120], [300, 200]])
        np.testing.assert_array_equal(result.assignments, np.array([2, 0, 1])[group])
        assert format_anchors(result.anchors, 416) == "anchors =  12, 10,  60,120, 300,200"
    assert good_starts >= 3


def _darknet_kmeans(boxes: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, int, float]:
    """Loop transcription of do_kmeans (src/matrix.c) + calc_anchors' sort and avg IoU, float32 scalars."""
    f = np.float32

    def dist(a, b):
        inter = min(a[0], b[0]) * min(a[1], b[1])
        return f(1) - inter / (a[0] * a[1] + b[0] * b[1] - inter)

    data = [(f(w), f(h)) for w, h in boxes]
    order = np.random.default_rng(seed).permutation(len(data))
    centers = [data[i] for i in order[:k]]
    assignments = [0] * len(data)
    iterations = 0
    while iterations < 1000:
        converged = True
        for i, point in enumerate(data):
            best, best_dist = 0, dist(point, centers[0])
            for j in range(k):
                d = dist(point, centers[j])
                if d < best_dist:
                    best, best_dist = j, d
            converged &= best == assignments[i]
            assignments[i] = best
        if converged:
            break
        sums, counts = [[0.0, 0.0] for _ in range(k)], [0] * k
        for point, a in zip(data, assignments):
            counts[a] += 1
            sums[a][0] += float(point[0])
            sums[a][1] += float(point[1])
        centers = [tuple(f(s / counts[j]) if counts[j] and s else centers[j][c] for c, s in enumerate(sums[j]))
                   for j in range(k)]
        iterations += 1
    centers.sort(key=lambda c: c[0] * c[1])
    best_ious = [max(1 - float(dist(p, c)) for c in centers) for p in data]
    return np.array(centers, np.float32), iterations, sum(best_ious) / len(data)


@pytest.fixture(scope="module")
def coco128_sizes(coco128_dir):
    return load_label_sizes(coco128_dir / "coco128.data", 416, 416)


def test_vectorised_kmeans_matches_the_loop_transcription(coco128_sizes):
    boxes = coco128_sizes.wh[:300]
    for seed in (0, 1):
        anchors, iterations, avg_iou = _darknet_kmeans(boxes, 5, seed)
        result = kmeans_anchors(boxes, 5, seed=seed)
        np.testing.assert_allclose(result.anchors, anchors, rtol=1e-5)
        assert result.iterations == iterations
        assert result.avg_iou == pytest.approx(avg_iou, abs=1e-6)


def test_coco128_labels_are_all_read(coco128_sizes):
    # golden/README.md section 4: 126 of 128 images have labels, 929 boxes
    assert coco128_sizes.num_images == 128 and coco128_sizes.wh.shape == (929, 2)
    assert [i.line for i in coco128_sizes.issues] == [None, None]  # the two missing label files
    assert 0 < coco128_sizes.wh.min() and coco128_sizes.wh.max() <= 416


def test_coco128_nine_anchors_fit_like_darknets_and_are_deterministic(coco128_sizes):
    result = kmeans_anchors(coco128_sizes.wh, 9, seed=0)
    again = kmeans_anchors(coco128_sizes.wh, 9, seed=0)
    np.testing.assert_array_equal(result.anchors, again.anchors)
    areas = result.anchors.prod(axis=1)
    assert np.all(np.diff(areas) >= 0)
    # Darknet's comments quote 63-67 % on full COCO/VOC; on these 929 boxes the published yolov3 anchors reach
    # 59.0 % and k-means from random starts 58-60 %.
    official = float(wh_iou(coco128_sizes.wh, YOLOV3_ANCHORS).max(axis=1).mean())
    assert official == pytest.approx(0.590, abs=0.001)
    assert 0.57 <= result.avg_iou <= 0.67
    assert result.avg_iou >= official - 0.02


def test_small_networks_print_four_decimals():
    assert format_anchors(np.array([[1.5, 2.25]]), 13) == "anchors = 1.5000,2.2500"


def test_too_few_boxes_and_no_train_list_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="2 label boxes cannot make 3 clusters"):
        kmeans_anchors([[1, 1], [2, 2]], 3)
    data = tmp_path / "x.data"
    data.write_text("classes = 1\nvalid = v.txt\n")
    with pytest.raises(CfgError, match="x.data: no 'train =' entry"):
        load_label_sizes(data, 416, 416)


def test_cli_prints_darknets_line_and_saves_the_plot(coco128_dir, tmp_path, capsys):
    plot, saved = tmp_path / "clusters.png", tmp_path / "anchors.txt"
    code = main(["calc_anchors", "--data", str(coco128_dir / "coco128.data"), "--num-of-clusters", "9",
                 "--width", "416", "--height", "416", "--seed", "0", "--show", str(plot), "--output", str(saved)])
    assert code == 0
    expected = kmeans_anchors(load_label_sizes(coco128_dir / "coco128.data", 416, 416).wh, 9, seed=0)
    out = capsys.readouterr().out
    assert format_anchors(expected.anchors, 416) in out.splitlines()
    assert f"avg IoU = {100 * expected.avg_iou:.2f} %" in out
    assert saved.read_text() == format_anchors(expected.anchors, 416).removeprefix("anchors = ")
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000


def test_cli_bad_plot_path_exits_2(coco128_dir, tmp_path, capsys):
    (tmp_path / "a_file").write_text("not a folder")
    code = main(["calc_anchors", "--data", str(coco128_dir / "coco128.data"), "--width", "416", "--height", "416",
                 "--seed", "0", "--show", str(tmp_path / "a_file" / "plot.png")])
    assert code == 2
    out, err = capsys.readouterr()  # refused before the clustering
    assert f"{tmp_path / 'a_file'}: output path exists and is not a folder" in err and "avg IoU" not in out
