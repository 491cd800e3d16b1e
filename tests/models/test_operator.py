"""Operator models: register local weights, verify them, override embedded names."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

import models
from models import registry
from tests.models.conftest import WHISPER_FILES, flip_byte


def test_added_directory_resolves_and_verifies(home: Path, whisper_copy: Path):
    spec = registry.add("site-whisper", "stt", "faster-whisper", whisper_copy)

    assert models.resolve("site-whisper") == whisper_copy
    report = models.verify(["site-whisper"])
    assert report.ok
    assert spec.origin == "operator"
    saved = yaml.safe_load((home / "models.yaml").read_text())["models"]["site-whisper"]
    assert saved["path"] == str(whisper_copy)
    assert sorted(saved["files"]) == WHISPER_FILES


def test_added_single_file_resolves_to_the_file(home: Path, tmp_path: Path, installed_defaults):
    onnx = tmp_path / "vad" / "site-vad.onnx"
    onnx.parent.mkdir()
    shutil.copy(installed_defaults["silero-vad"], onnx)
    (onnx.parent / "unrelated.txt").write_text("not part of the model")

    registry.add("site-vad", "vad", "onnxruntime", onnx)

    assert models.resolve("site-vad") == onnx
    assert [f.path for f in models.get("site-vad").files] == ["site-vad.onnx"]


def test_one_corrupted_byte_is_a_hash_mismatch_naming_the_file(home: Path, whisper_copy: Path):
    registry.add("site-whisper", "stt", "faster-whisper", whisper_copy)
    models.clear_cache()
    flip_byte(whisper_copy / "model.bin", 1_000_000)

    with pytest.raises(models.ModelHashMismatch) as err:
        models.resolve("site-whisper")

    message = str(err.value)
    assert "site-whisper" in message
    assert str(whisper_copy / "model.bin") in message
    assert "trunkline models add site-whisper --replace" in message
    report = models.verify()
    assert not report.ok
    assert [c.spec.name for c in report.failures] == ["site-whisper"]


def test_a_deleted_file_is_missing(home: Path, whisper_copy: Path):
    registry.add("site-whisper", "stt", "faster-whisper", whisper_copy)
    (whisper_copy / "tokenizer.json").unlink()

    with pytest.raises(models.ModelMissing) as err:
        models.resolve("site-whisper")

    assert str(whisper_copy / "tokenizer.json") in str(err.value)


def test_a_deleted_model_directory_is_missing(home: Path, whisper_copy: Path):
    registry.add("site-whisper", "stt", "faster-whisper", whisper_copy)
    shutil.rmtree(whisper_copy)

    with pytest.raises(models.ModelMissing, match="does not exist"):
        models.resolve("site-whisper")


def test_operator_model_overrides_the_embedded_one_of_the_same_name(
    home: Path, whisper_copy: Path, installed_defaults
):
    registry.add("whisper-tiny.en", "stt", "faster-whisper", whisper_copy)

    assert models.resolve("whisper-tiny.en") == whisper_copy
    entries = {e.spec.name: e for e in models.list_models()}
    assert entries["whisper-tiny.en"].overrides_embedded
    assert entries["whisper-tiny.en"].spec.origin == "operator"
    # Other defaults still come from the embedded manifest.
    assert models.resolve("silero-vad") == installed_defaults["silero-vad"]
    checked = [c for c in models.verify().checks if c.spec.name == "whisper-tiny.en"]
    assert [c.path for c in checked] == [whisper_copy]


def test_registering_twice_needs_replace(home: Path, whisper_copy: Path, tmp_path: Path):
    registry.add("site-whisper", "stt", "faster-whisper", whisper_copy)
    other = tmp_path / "other"
    shutil.copytree(whisper_copy, other)

    with pytest.raises(models.RegistryError, match="--replace"):
        registry.add("site-whisper", "stt", "faster-whisper", other)
    registry.add("site-whisper", "stt", "faster-whisper", other, replace=True)

    assert models.resolve("site-whisper") == other


@pytest.mark.parametrize(
    ("name", "kind", "engine", "complaint"),
    [
        ("Bad Name", "stt", "faster-whisper", "invalid model name"),
        ("ok-name", "asr", "faster-whisper", "invalid model kind"),
        ("ok-name", "stt", "", "invalid engine name"),
    ],
)
def test_bad_add_input_is_a_registry_error(
    home: Path, whisper_copy: Path, name: str, kind: str, engine: str, complaint: str
):
    with pytest.raises(models.RegistryError, match=complaint):
        registry.add(name, kind, engine, whisper_copy)
    assert not (home / "models.yaml").exists()


def test_adding_a_path_that_does_not_exist_is_missing(home: Path, tmp_path: Path):
    with pytest.raises(models.ModelMissing, match="does not exist"):
        registry.add("ghost", "llm", "llama.cpp", tmp_path / "nothing.gguf")


def test_a_malformed_registry_is_a_clear_error(home: Path):
    home.mkdir()
    (home / "models.yaml").write_text("models: [this is: not: yaml")

    with pytest.raises(models.RegistryError) as err:
        models.list_models()

    assert str(home / "models.yaml") in str(err.value)
