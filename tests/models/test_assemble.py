"""Assembling a model from parts in several packages: order, hashes, atomicity."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml

import models
from models.manifest import parse_manifest
from models.registry import Registry
from tests.models.conftest import flip_byte


@pytest.fixture
def split_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, installed_defaults):
    """The real silero VAD ONNX split across three importable packages, with its manifest."""
    whole = installed_defaults["silero-vad"].read_bytes()
    site = tmp_path / "site"
    cut = [0, 700_000, 1_500_000, len(whole)]
    parts = []
    for i in range(3):
        pkg = site / f"trunkline_test_part{i + 1}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        data = whole[cut[i] : cut[i + 1]]
        (pkg / "data" / f"part{i + 1}.bin").write_bytes(data)
        parts.append(
            {
                "package": pkg.name,
                "path": f"data/part{i + 1}.bin",
                "sha256": hashlib.sha256(data).hexdigest(),
                "size": len(data),
            }
        )
    monkeypatch.syspath_prepend(str(site))
    manifest = {
        "models": {
            "split-vad": {
                "kind": "vad",
                "engine": "onnxruntime",
                "source": {"type": "parts", "output": "split-vad.onnx", "parts": parts},
                "files": {
                    "split-vad.onnx": {
                        "sha256": hashlib.sha256(whole).hexdigest(),
                        "size": len(whole),
                    }
                },
            }
        }
    }
    catalog = models.Catalog(
        embedded=parse_manifest(yaml.safe_load(yaml.safe_dump(manifest)), "test manifest"),
        operator=Registry(),
        cache=tmp_path / "cache",
    )
    return catalog, site, whole


def test_parts_are_joined_in_order_into_the_cache(split_model):
    catalog, _, whole = split_model

    path = catalog.resolve("split-vad")

    assert path == catalog.cache / "split-vad.onnx"
    assert path.read_bytes() == whole


def test_a_corrupt_part_names_that_part_and_leaves_nothing_behind(split_model):
    catalog, site, _ = split_model
    bad = site / "trunkline_test_part2" / "data" / "part2.bin"
    flip_byte(bad, 1234)

    with pytest.raises(models.ModelHashMismatch) as err:
        catalog.resolve("split-vad")

    assert str(bad) in str(err.value)
    assert "trunkline_test_part2" in str(err.value)
    leftovers = [p.name for p in catalog.cache.iterdir() if not p.name.endswith(".lock")]
    assert leftovers == []


def test_a_missing_part_package_says_how_to_install_it(split_model):
    catalog, site, _ = split_model
    (site / "trunkline_test_part3" / "data" / "part3.bin").unlink()

    with pytest.raises(models.ModelMissing) as err:
        catalog.resolve("split-vad")

    assert "trunkline_test_part3" in str(err.value)
    assert "split-vad" in str(err.value)


def test_a_model_whose_package_is_absent_is_missing_with_the_pip_fix(tmp_path: Path):
    manifest = {
        "models": {
            "ghost": {
                "kind": "stt",
                "engine": "faster-whisper",
                "source": {
                    "type": "package",
                    "package": "trunkline_no_such_package",
                    "distribution": "no-such-package==1.0",
                    "requirements": "embedded-requirements.txt",
                },
                "files": {"model.bin": {"sha256": "0" * 64, "size": 1}},
            }
        }
    }
    catalog = models.Catalog(
        embedded=parse_manifest(manifest, "test manifest"), operator=Registry(), cache=tmp_path
    )

    with pytest.raises(models.ModelMissing) as err:
        catalog.resolve("ghost")

    assert "no-such-package==1.0" in str(err.value)
    assert "pip install" in str(err.value) and "--require-hashes" in str(err.value)
    assert not catalog.verify().ok


@pytest.mark.parametrize(
    ("broken", "complaint"),
    [
        ({"kind": "speech"}, "invalid model kind"),
        ({"source": {"type": "http", "url": "x"}}, "unknown source type"),
        ({"files": {"../escape.bin": {"sha256": "0" * 64, "size": 1}}}, "stay inside"),
        ({"files": {"model.bin": {"sha256": "abc", "size": 1}}}, "64 lowercase hex"),
    ],
)
def test_a_malformed_manifest_is_a_clear_registry_error(broken: dict, complaint: str):
    entry = {
        "kind": "stt",
        "engine": "faster-whisper",
        "source": {"type": "package", "package": "x"},
        "files": {"model.bin": {"sha256": "0" * 64, "size": 1}},
        **broken,
    }
    with pytest.raises(models.RegistryError, match=complaint):
        parse_manifest({"models": {"m": entry}}, "test manifest")
