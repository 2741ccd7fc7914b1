"""custom-cfg: classes= and the filters= before each head follow C Darknet's rule; every other byte is kept."""
from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from darknet_torch import Darknet
from darknet_torch.cli.main import main
from darknet_torch.config import load_cfg, parse_cfg_text, type_sections
from darknet_torch.config.custom import customize_cfg_file, customize_cfg_text, head_filters, recommended_schedule
from darknet_torch.errors import CfgError

REPO_CFG = Path(__file__).resolve().parents[2] / "cfg"
NET = "[net]\nwidth=64\nheight=64\nchannels=3\n"


def _changed_lines(before: str, after: str) -> list[tuple[str, str]]:
    """(old line, new line) for every line that differs; fails if lines were added or removed."""
    a, b = before.splitlines(), after.splitlines()
    assert len(a) == len(b), "line count changed"
    return [(x, y) for x, y in zip(a, b) if x != y]


def test_yolov4_tiny_three_classes_changes_only_heads_and_their_convs(tmp_path):
    source = (REPO_CFG / "yolov4-tiny.cfg").read_text()
    text, edits = customize_cfg_text(source, 3, "yolov4-tiny.cfg")
    # Two heads x 3 masked anchors: (3+5)*3 = 24 filters each.
    assert _changed_lines(source, text) == [("filters=255", "filters=24"), ("classes=80", "classes=3")] * 2
    assert [(e.key, e.old, e.new) for e in edits] == [("filters", "255", "24"), ("classes", "80", "3")] * 2
    delta = list(difflib.unified_diff(source.splitlines(), text.splitlines(), n=0, lineterm=""))
    assert sum(line.startswith("-") and not line.startswith("---") for line in delta) == 4
    path = tmp_path / "my.cfg"
    path.write_text(text)
    model = Darknet(path)
    assert model.num_classes == 3
    assert [model.layer_infos[i - 1].out_shape[0] for i in model.head_indices] == [24, 24]
    assert [model.layer_infos[i].section.name for i in (j - 1 for j in model.head_indices)] == ["convolutional"] * 2


@pytest.mark.parametrize("head, classes, expected", [
    ("[yolo]\nmask=0,1,2\nnum=9\n", 3, 24),               # (3+5)*3
    ("[yolo]\nmask=3,4\nnum=6\n", 1, 12),                 # (1+5)*2
    ("[yolo]\nnum=6\n", 3, 48),                           # no mask: every anchor, (3+5)*6
    ("[Gaussian_yolo]\nmask=0,1,2\nnum=9\n", 3, 36),      # (3+9)*3
    ("[region]\nnum=5\n", 3, 40),                         # coords=4 default: (4+1+3)*5
    ("[region]\ncoords=4\nnum=5\n", 20, 125),             # yolov2-voc: 125
    ("[region]\ncoords=6\nnum=3\n", 2, 27),               # (6+1+2)*3
])
def test_c_darknet_filter_rule(head, classes, expected):
    sections = type_sections(parse_cfg_text(f"{NET}\n[convolutional]\nfilters=1\nsize=1\n\n{head}"))
    assert head_filters(sections[-1], classes) == expected
    text, _ = customize_cfg_text(f"{NET}\n[convolutional]\nfilters=1\nsize=1\n\n{head}", classes)
    assert f"filters={expected}\n" in text and f"classes={classes}\n" in text


@pytest.mark.parametrize("path", sorted(REPO_CFG.glob("*.cfg")), ids=lambda p: p.stem)
def test_every_project_cfg_customises_and_builds(path):
    data, edits = customize_cfg_file(path, 7)
    sections = type_sections(parse_cfg_text(data.decode(), str(path)))
    sections[0].values.update(width=64, height=64)
    model = Darknet(sections)  # the builder refuses a conv whose filters do not match its head
    assert model.num_classes == 7
    assert len(edits) == 2 * len(model.head_indices)


def test_official_cfgs_with_other_heads_customise_and_build(official_cfg_dir):
    for name, head_type, per_head in [("Gaussian_yolov3_BDD", "Gaussian_yolo", (2 + 9) * 3),
                                      ("yolov2-voc", "region", (4 + 1 + 2) * 5), ("yolov3-tiny_3l", "yolo", 21)]:
        data, _ = customize_cfg_file(official_cfg_dir / f"{name}.cfg", 2)
        sections = type_sections(parse_cfg_text(data.decode(), name))
        sections[0].values.update(width=64, height=64)
        model = Darknet(sections)
        assert {model.layer_infos[i].section.name for i in model.head_indices} == {head_type}
        assert [model.layer_infos[i - 1].out_shape[0] for i in model.head_indices] == \
            [per_head] * len(model.head_indices), name


def test_comments_spacing_and_crlf_survive():
    source = (f"{NET}# my comment\r\n\r\n[convolutional]\r\nsize = 1\r\nfilters = 255   # per head\r\n"
              f"\r\n[yolo]\r\n  classes = 80\r\nmask = 0,1,2\r\nnum=3\r\n").replace("\n", "\r\n").replace("\r\r", "\r")
    text, _ = customize_cfg_text(source, 2)
    assert text == source.replace("filters = 255   #", "filters = 21   #").replace("classes = 80", "classes = 2")


def test_missing_keys_are_inserted_after_the_section_header():
    source = f"{NET}\n[convolutional]\nsize=1\n\n[yolo]\nmask=0\nnum=1"  # no filters=, no classes=, no final newline
    text, edits = customize_cfg_text(source, 4)
    assert text == f"{NET}\n[convolutional]\nfilters=9\nsize=1\n\n[yolo]\nclasses=4\nmask=0\nnum=1"
    assert [(e.key, e.old) for e in edits] == [("filters", None), ("classes", None)]
    assert "added filters=9" in edits[0].describe()


def test_unchanged_values_are_not_reported():
    _, edits = customize_cfg_text((REPO_CFG / "yolov3-tiny.cfg").read_text(), 80)
    assert edits == []


@pytest.mark.parametrize("classes, max_batches, steps", [(1, 6000, [4800, 5400]), (3, 6000, [4800, 5400]),
                                                          (5, 10000, [8000, 9000]), (80, 160000, [128000, 144000])])
def test_darknet_readme_schedule(classes, max_batches, steps):
    assert recommended_schedule(classes) == (max_batches, steps)
    text, _ = customize_cfg_text((REPO_CFG / "yolov4-tiny.cfg").read_text(), classes, darknet_schedule=True)
    net = type_sections(parse_cfg_text(text))[0]
    assert (net["max_batches"], net["steps"], net["scales"]) == (max_batches, steps, [0.1, 0.1])


def test_schedule_needs_steps_policy():
    with pytest.raises(CfgError, match=r"<string>:\d+ \[net\] policy.*policy=poly"):
        customize_cfg_text(f"{NET}policy=poly\n\n[convolutional]\nfilters=1\n\n[yolo]\nmask=0\n", 2,
                           darknet_schedule=True)


def test_schedule_needs_scales_as_darknet_does():
    """parse_net_options refuses policy=steps without scales=; the schedule edit must not write such a file."""
    with pytest.raises(CfgError, match=r"<string>:1 \[net\]: .*policy=steps also needs scales="):
        customize_cfg_text(f"{NET}policy=steps\n\n[convolutional]\nfilters=1\n\n[yolo]\nmask=0\n", 2,
                           darknet_schedule=True)


@pytest.mark.parametrize("body, message", [
    ("[convolutional]\nfilters=3\n", "no \\[yolo\\], \\[Gaussian_yolo\\] or \\[region\\] head"),
    ("[convolutional]\nfilters=3\n\n[route]\nlayers=-1\n\n[yolo]\nmask=0\n",
     "<string>:12 \\[yolo\\]: the \\[yolo\\] must be fed by the \\[convolutional\\] .* found \\[route\\] at "
     "<string>:9 \\[route\\]"),
    ("[convolutional]\nfilters=3\n\n[maxpool]\nmaxpool_depth=1\n\n[yolo]\nmask=0\n",
     "<string>:12 \\[yolo\\]: .* found \\[maxpool\\] at <string>:9"),
    ("[convolutional]\nfilters=3\n\n[region]\ntree=data/9k.tree\n", "<string>:10 \\[region\\] tree: tree= ties"),
])
def test_refused_with_file_and_line(body, message):
    with pytest.raises(CfgError, match=message):
        customize_cfg_text(f"{NET}\n{body}", 2)


@pytest.mark.parametrize("between", ["[dropout]\nprobability=.1\n", "[maxpool]\nsize=1\nstride=1\n",
                                     "[activation]\nactivation=leaky\n[batchnorm]\n"])
def test_conv_feeding_the_head_through_channel_keeping_layers_is_edited(between):
    """Darknet checks a head against its input; layers that keep the channels may sit between it and its conv."""
    source = f"{NET}[convolutional]\nfilters=4\n[convolutional]\nfilters=18\nsize=1\n{between}" \
             f"[yolo]\nmask=0,1,2\nnum=3\nanchors=1,2,3,4,5,6\nclasses=1\n"
    text, edits = customize_cfg_text(source, 3)
    assert [(e.line, e.key, e.old, e.new) for e in edits] == [(8, "filters", "18", "24"), (edits[1].line, "classes",
                                                                                            "1", "3")]
    assert Darknet(type_sections(parse_cfg_text(text))).num_classes == 3


def test_head_right_after_net_is_refused_not_wrapped_to_the_last_section():
    """raws[index - 1] with index 0 was the file's last section: a conv there was silently edited."""
    source = "[yolo]\nmask=0\n[net]\nwidth=64\n[convolutional]\nfilters=3\n"
    with pytest.raises(CfgError, match=r"<string>:1 \[yolo\]: .* found none"):
        customize_cfg_text(source, 2)


def test_cli_writes_file_and_uses_names(tmp_path, capsys):
    names = tmp_path / "obj.names"
    names.write_text("cat\ndog\nbird\n")
    out = tmp_path / "my.cfg"
    assert main(["custom-cfg", "--cfg", str(REPO_CFG / "yolov4-tiny.cfg"), "--names", str(names),
                 "--output", str(out), "--darknet-schedule"]) == 0
    assert Darknet(out).num_classes == 3
    assert load_cfg(out)[0]["max_batches"] == 6000
    assert "6 line(s) changed" in capsys.readouterr().out
    assert main(["custom-cfg", "--cfg", str(REPO_CFG / "yolov4-tiny.cfg"), "--names", str(names),
                 "--classes", "4", "--output", str(out)]) == 2
    assert "--classes 4 but" in capsys.readouterr().err
    assert main(["custom-cfg", "--cfg", str(tmp_path / "missing.cfg"), "--classes", "2", "--output", str(out)]) == 2
    assert "missing.cfg" in capsys.readouterr().err


def test_file_bytes_outside_the_edits_are_kept(tmp_path):
    source = f"{NET}# caf\xe9 in latin-1\n\n[convolutional]\nfilters=255\n\n[yolo]\nmask=0,1,2\nclasses=80\n"
    path = tmp_path / "latin1.cfg"
    path.write_bytes(source.encode("latin-1"))
    data, _ = customize_cfg_file(path, 1)
    assert data == source.replace("255", "18").replace("classes=80", "classes=1").encode("latin-1")


def test_cfg_to_standard_output_and_the_status_lines_to_stderr(golden_dir, capfdbinary):
    cfg = golden_dir / "mini" / "yolov3-tiny" / "yolov3-tiny.cfg"
    assert main(["custom-cfg", "--cfg", str(cfg), "--classes", "3", "--output", "-"]) == 0
    captured = capfdbinary.readouterr()
    assert captured.out == customize_cfg_file(cfg, 3)[0]
    assert captured.err.startswith(b"-: ") and b"line(s) changed" in captured.err
