"""models.voices.VoiceStore: voice clones on disk (torch-free; runs in both venvs)."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import pytest

from models.voices import (
    InvalidVoiceId,
    VoiceCorrupt,
    VoiceError,
    VoiceExists,
    VoiceNotFound,
    VoiceStore,
)

SOURCE = hashlib.sha256(b"reference audio").hexdigest()


def writer(payload: bytes):
    def write(path: Path) -> None:
        path.write_bytes(payload)

    return write


def test_save_load_list_delete(tmp_path):
    store = VoiceStore(tmp_path / "voices")
    assert store.list() == [] and store.ids() == []
    info = store.save("maya", writer(b"conds-1"), source_sha256=SOURCE, duration_s=7.25)
    assert (info.id, info.name, info.duration_s) == ("maya", "maya", 7.25)
    assert info.engine == "chatterbox"
    assert info.source_sha256 == SOURCE
    assert info.conds_sha256 == hashlib.sha256(b"conds-1").hexdigest()
    store.save("joe", writer(b"conds-2"), source_sha256=SOURCE, duration_s=5, name="Joe")

    loaded, path = store.load("maya")
    assert loaded == info and path.read_bytes() == b"conds-1"
    assert [v.id for v in store.list()] == ["joe", "maya"]
    assert store.get("joe").name == "Joe"
    meta = json.loads((tmp_path / "voices" / "maya.json").read_text())
    assert set(meta) == {
        "id", "name", "source_sha256", "duration_s", "created", "conds_sha256", "engine",
    }  # fmt: skip

    store.delete("maya")
    assert store.ids() == ["joe"]
    assert sorted(p.name for p in (tmp_path / "voices").iterdir()) == ["joe.conds.pt", "joe.json"]
    with pytest.raises(VoiceNotFound, match="'maya' not found"):
        store.load("maya")
    with pytest.raises(VoiceNotFound):
        store.delete("maya")


def test_existing_voice_is_kept_unless_replaced(tmp_path):
    store = VoiceStore(tmp_path)
    store.save("maya", writer(b"old"), source_sha256=SOURCE, duration_s=6)
    with pytest.raises(VoiceExists, match="already exists"):
        store.save("maya", writer(b"new"), source_sha256=SOURCE, duration_s=6)
    assert store.load("maya")[1].read_bytes() == b"old"
    store.save("maya", writer(b"new"), source_sha256=SOURCE, duration_s=6, replace=True)
    assert store.load("maya")[1].read_bytes() == b"new"


@pytest.mark.parametrize("voice_id", ["", "Maya", "../etc", "a b", "-x", "x" * 65, "é"])
def test_invalid_ids_are_refused(tmp_path, voice_id):
    store = VoiceStore(tmp_path)
    with pytest.raises(InvalidVoiceId, match="invalid voice id"):
        store.save(voice_id, writer(b"c"), source_sha256=SOURCE, duration_s=6)
    assert list(tmp_path.iterdir()) == []


def test_damaged_or_missing_conditionals_are_reported(tmp_path):
    store = VoiceStore(tmp_path)
    store.save("maya", writer(b"conds"), source_sha256=SOURCE, duration_s=6)
    (tmp_path / "maya.conds.pt").write_bytes(b"condz")
    with pytest.raises(VoiceCorrupt, match=r"sha256 .* re-create the voice"):
        store.load("maya")
    (tmp_path / "maya.conds.pt").unlink()
    with pytest.raises(VoiceCorrupt, match=r"conditionals file .* is missing"):
        store.load("maya")
    (tmp_path / "maya.json").write_text("{not json")
    with pytest.raises(VoiceCorrupt, match="unreadable metadata"):
        store.get("maya")


def test_failed_write_leaves_nothing_behind(tmp_path):
    store = VoiceStore(tmp_path)

    def crash(path: Path) -> None:
        path.write_bytes(b"half")
        raise RuntimeError("model crashed")

    with pytest.raises(RuntimeError, match="model crashed"):
        store.save("maya", crash, source_sha256=SOURCE, duration_s=6)
    with pytest.raises(VoiceError, match="no conditionals file"):
        store.save("maya", lambda path: None, source_sha256=SOURCE, duration_s=6)
    with pytest.raises(VoiceError, match="64 hex digits"):
        store.save("maya", writer(b"c"), source_sha256="abc", duration_s=6)
    assert list(tmp_path.iterdir()) == []
    assert store.ids() == []


def test_concurrent_saves_of_different_voices_all_land(tmp_path):
    store = VoiceStore(tmp_path)
    ids = [f"voice-{i}" for i in range(8)]
    threads = [
        threading.Thread(
            target=store.save,
            args=(v, writer(v.encode())),
            kwargs={"source_sha256": SOURCE, "duration_s": 6},
        )
        for v in ids
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert store.ids() == sorted(ids)
    assert all(store.load(v)[1].read_bytes() == v.encode() for v in ids)
