"""Voice clones on disk: one cached conditionals file per voice, plus its metadata.

A clone is computed once from reference audio (seconds of GPU or minutes of CPU) and then
only loaded, by every TTS replica at start. The store knows nothing about the model: the
engine hands it a function that writes the conditionals file. Each voice is two files in
the store's folder:

    <id>.conds.pt   what the engine wrote (opaque here)
    <id>.json       id, name, source sha256, created, duration, conds sha256, engine

The JSON is written last and removed first, so it marks a complete voice: a crash mid-way
leaves at most a stray conditionals file, which `list()` ignores. Both are replaced by
atomic renames, so replicas reading the folder never see half a file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

# Lower-case, URL- and filename-safe, so an id is also a path component and an API slug.
VOICE_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
CONDS_SUFFIX = ".conds.pt"
META_SUFFIX = ".json"


class VoiceError(Exception):
    """A voice clone cannot be stored or used; the message says which and why."""


class InvalidVoiceId(VoiceError, ValueError):
    pass


class VoiceNotFound(VoiceError, LookupError):
    pass


class VoiceExists(VoiceError):
    pass


class VoiceCorrupt(VoiceError):
    """The voice's files are missing, unreadable or do not match the recorded sha256."""


@dataclass(frozen=True)
class VoiceInfo:
    id: str
    name: str
    source_sha256: str  # of the reference audio the clone was computed from
    duration_s: float  # of that reference audio
    created: str  # ISO 8601, UTC
    conds_sha256: str  # of the conditionals file, checked on every load
    engine: str = "chatterbox"


def check_voice_id(voice_id: str) -> str:
    if not isinstance(voice_id, str) or not VOICE_ID_PATTERN.match(voice_id):
        raise InvalidVoiceId(
            f"invalid voice id {voice_id!r}: use 1-64 characters of a-z, 0-9, '-' and '_', "
            "starting with a letter or digit"
        )
    return voice_id


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class VoiceStore:
    """Save, load, list and delete voice clones in one folder (created on first save)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._lock = threading.Lock()  # one writer at a time within this process

    def conds_path(self, voice_id: str) -> Path:
        return self.root / (check_voice_id(voice_id) + CONDS_SUFFIX)

    def _meta_path(self, voice_id: str) -> Path:
        return self.root / (check_voice_id(voice_id) + META_SUFFIX)

    def exists(self, voice_id: str) -> bool:
        return self._meta_path(voice_id).is_file()

    def save(
        self,
        voice_id: str,
        write_conds: Callable[[Path], None],
        *,
        source_sha256: str,
        duration_s: float,
        name: str | None = None,
        engine: str = "chatterbox",
        replace: bool = False,
    ) -> VoiceInfo:
        """Store a voice: `write_conds(path)` writes the conditionals file to `path`."""
        check_voice_id(voice_id)
        if not re.fullmatch(r"[0-9a-f]{64}", source_sha256 or ""):
            raise VoiceError(f"source_sha256 must be 64 hex digits, got {source_sha256!r}")
        with self._lock:
            if not replace and self.exists(voice_id):
                raise VoiceExists(f"voice {voice_id!r} already exists in {self.root}")
            self.root.mkdir(parents=True, exist_ok=True)
            conds_tmp = self._tmp_path(voice_id)
            try:
                write_conds(conds_tmp)
                if not conds_tmp.is_file() or conds_tmp.stat().st_size == 0:
                    raise VoiceError(f"voice {voice_id!r}: no conditionals file was written")
                info = VoiceInfo(
                    id=voice_id,
                    name=name or voice_id,
                    source_sha256=source_sha256,
                    duration_s=round(float(duration_s), 3),
                    created=datetime.now(UTC).isoformat(timespec="seconds"),
                    conds_sha256=_sha256_file(conds_tmp),
                    engine=engine,
                )
                os.replace(conds_tmp, self.conds_path(voice_id))
            finally:
                conds_tmp.unlink(missing_ok=True)
            self._write_meta(info)
        return info

    def get(self, voice_id: str) -> VoiceInfo:
        meta = self._meta_path(voice_id)
        try:
            data = json.loads(meta.read_text())
        except FileNotFoundError:
            raise VoiceNotFound(f"voice {voice_id!r} not found in {self.root}") from None
        except (OSError, ValueError) as e:
            raise VoiceCorrupt(f"voice {voice_id!r}: unreadable metadata {meta}: {e}") from None
        try:
            info = VoiceInfo(**data)
        except TypeError as e:
            raise VoiceCorrupt(f"voice {voice_id!r}: malformed metadata {meta}: {e}") from None
        if info.id != voice_id:
            raise VoiceCorrupt(f"voice {voice_id!r}: metadata {meta} names voice {info.id!r}")
        return info

    def load(self, voice_id: str) -> tuple[VoiceInfo, Path]:
        """The voice's metadata and its verified conditionals file."""
        info = self.get(voice_id)
        path = self.conds_path(voice_id)
        if not path.is_file():
            raise VoiceCorrupt(f"voice {voice_id!r}: conditionals file {path} is missing")
        actual = _sha256_file(path)
        if actual != info.conds_sha256:
            raise VoiceCorrupt(
                f"voice {voice_id!r}: {path} has sha256 {actual}, metadata says "
                f"{info.conds_sha256}; re-create the voice from its reference audio"
            )
        return info, path

    def ids(self) -> list[str]:
        """Ids of every complete voice (metadata present), sorted."""
        if not self.root.is_dir():
            return []
        names = (p.name[: -len(META_SUFFIX)] for p in self.root.glob("*" + META_SUFFIX))
        return sorted(n for n in names if VOICE_ID_PATTERN.match(n))

    def list(self) -> list[VoiceInfo]:
        """Every complete voice, sorted by id. A voice with broken metadata raises."""
        return [self.get(voice_id) for voice_id in self.ids()]

    def delete(self, voice_id: str) -> None:
        with self._lock:
            meta = self._meta_path(voice_id)
            if not meta.is_file():
                raise VoiceNotFound(f"voice {voice_id!r} not found in {self.root}")
            meta.unlink()
            self.conds_path(voice_id).unlink(missing_ok=True)

    def _tmp_path(self, voice_id: str) -> Path:
        fd, name = tempfile.mkstemp(prefix=f".{voice_id}.", suffix=".tmp", dir=self.root)
        os.close(fd)
        return Path(name)

    def _write_meta(self, info: VoiceInfo) -> None:
        tmp = self._tmp_path(info.id)
        try:
            tmp.write_text(json.dumps(asdict(info), indent=2) + "\n")
            os.replace(tmp, self._meta_path(info.id))
        finally:
            tmp.unlink(missing_ok=True)
