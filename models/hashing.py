"""sha256 of model files, cached per process.

The cache key is the file's identity and state (path, device, inode, size, mtime),
so a second resolve of an unchanged 500 MB model costs a stat, not a re-hash, while
a replaced or rewritten file is hashed again.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

from models.progress import ProgressFactory

CHUNK = 4 * 1024 * 1024
# Smaller files hash in well under a second: no progress for them.
PROGRESS_MIN_BYTES = 64 * 1024 * 1024

_CacheKey = tuple[str, int, int, int, int]
_cache: dict[_CacheKey, str] = {}
_lock = threading.Lock()


def _key(path: Path) -> _CacheKey:
    st = path.stat()
    return (str(path.absolute()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def sha256_file(path: Path, progress: ProgressFactory | None = None) -> str:
    """Hex sha256 of `path`; reuses this process's earlier result if the file is unchanged."""
    key = _key(path)
    with _lock:
        cached = _cache.get(key)
    if cached is not None:
        return cached
    digest = _hash(path, key[3], progress)
    with _lock:
        _cache[key] = digest
    return digest


def clear_cache() -> None:
    with _lock:
        _cache.clear()


def _hash(path: Path, size: int, progress: ProgressFactory | None) -> str:
    big = progress is not None and size >= PROGRESS_MIN_BYTES
    reporter = progress(f"hashing {path.name}", size) if big else None
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        while n := f.readinto(buf):
            h.update(view[:n])
            if reporter:
                reporter.advance(n)
    if reporter:
        reporter.close()
    return h.hexdigest()


def remember(path: Path, digest: str) -> None:
    """Record a digest computed while writing `path` (assembly), so it is not hashed again."""
    key = _key(path)
    with _lock:
        _cache[key] = digest
