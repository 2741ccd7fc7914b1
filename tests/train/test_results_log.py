"""results_<cfg>.csv: rows every N iterations and at evaluations, exact floats, resume, TensorBoard mirroring."""
from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from darknet_torch.errors import DataError
from darknet_torch.train import results_log
from darknet_torch.train.results_log import ResultsLog


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_rows_every_n_and_at_evaluations(tmp_path):
    log = ResultsLog(tmp_path / "results.csv", every=2)
    for k in range(1, 6):
        log.log(k, {"loss": k / 3, "lr": 0.001, "map": 0.25 if k == 3 else None}, evaluated=k == 3)
    got = rows(tmp_path / "results.csv")
    assert [r["iteration"] for r in got] == ["2", "3", "4"]
    assert [float(r["loss"]) for r in got] == [2 / 3, 1.0, 4 / 3]  # repr: the same floats back
    assert [r["map"] for r in got] == ["", "0.25", ""]
    assert list(got[0]) == ["iteration", "loss", "lr", "map"]


def test_missing_and_nan_values_are_empty_cells_and_new_keys_are_not_logged(tmp_path, caplog):
    log = ResultsLog(tmp_path / "results.csv")
    log.log(1, {"loss": 1.0, "iou_1": 0.5, "map": None})
    log.log(2, {"loss": 2.0, "iou_1": float("nan"), "map": None})  # head 1 had no assignment
    log.log(3, {"loss": 3.0, "extra": 1.0, "map": None})
    assert [(r["loss"], r["iou_1"]) for r in rows(tmp_path / "results.csv")] == [("1.0", "0.5"), ("2.0", ""),
                                                                               ("3.0", "")]
    assert "not logging extra" in caplog.text


def test_resume_drops_rows_after_the_start_and_a_torn_line(tmp_path):
    path = tmp_path / "results.csv"
    log = ResultsLog(path)
    for k in range(1, 6):
        log.log(k, {"loss": float(k), "map": None})
    with path.open("a") as handle:
        handle.write("\u00b2,1.0,\n")  # a corrupt row ("\u00b2".isdigit() is True, int() refuses it): dropped
        handle.write("6,6.")  # killed mid-line
    resumed = ResultsLog(path, start_iteration=3)
    resumed.log(4, {"loss": 40.0, "map": None})
    assert [(r["iteration"], r["loss"]) for r in rows(path)] == [("1", "1.0"), ("2", "2.0"), ("3", "3.0"),
                                                                  ("4", "40.0")]


def test_tensorboard_gets_the_same_scalars(tmp_path, monkeypatch):
    calls = []

    class FakeWriter:
        def add_scalar(self, tag, value, step):
            calls.append((tag, value, step))

        def flush(self):
            pass

        def close(self):
            calls.append("closed")

    monkeypatch.setattr(results_log, "_tensorboard_writer", lambda folder: FakeWriter())
    log = ResultsLog(tmp_path / "results.csv", tensorboard_dir=tmp_path / "tb")
    log.log(1, {"loss": 2.5, "box_0": 1.0, "map": None})
    log.log(2, {"loss": 2.0, "box_0": 0.5, "map": 0.4}, evaluated=True)
    log.close()
    assert calls == [("train/loss", 2.5, 1), ("train/box_0", 1.0, 1), ("train/loss", 2.0, 2),
                     ("train/box_0", 0.5, 2), ("metrics/mAP50", 0.4, 2), "closed"]


def test_real_tensorboard_event_files_hold_the_csv_values(tmp_path):
    pytest.importorskip("tensorboard", reason="TensorBoard not installed (pip install '.[tensorboard]')")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log = ResultsLog(tmp_path / "results.csv", tensorboard_dir=tmp_path / "tb")
    log.log(1, {"loss": 2.5, "map": None})
    log.log(2, {"loss": 2.0, "map": 0.375}, evaluated=True)
    log.close()
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("train/loss")] == [(1, 2.5), (2, 2.0)]
    assert [(e.step, e.value) for e in events.Scalars("metrics/mAP50")] == [(2, 0.375)]


def test_without_tensorboard_installed_only_the_csv_is_written(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("no tensorboard")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    log = ResultsLog(tmp_path / "results.csv", tensorboard_dir=tmp_path / "tb")
    assert log.tensorboard is None
    log.log(1, {"loss": 1.0, "map": None})
    assert not (tmp_path / "tb").exists() and len(rows(tmp_path / "results.csv")) == 1


@pytest.mark.parametrize("content,why", [
    (b"iteration,loss,map\n1,\xff\xfe\x00garbage,\n", "is not UTF-8 CSV text"),
    (bytes(range(256)) * 4, "is not UTF-8 CSV text"),
    (b"hello,world\n1,2\n", "its first line 'hello,world' is not a results header"),
])
def test_resume_on_a_corrupt_results_file_names_it_and_keeps_it(tmp_path, content, why):
    """Undecodable bytes used to escape as a UnicodeDecodeError; a foreign CSV was rewritten (its rows dropped)."""
    path = tmp_path / "results_yolo.csv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}: cannot continue this results log: .*{why}"
                                        rf".*left unchanged"):
        ResultsLog(path, start_iteration=3)
    assert path.read_bytes() == content
