"""`trunkline models ...`: through click's runner and once through the real script."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from agent.cli.models_cmd import models as models_cli
from tests.models.conftest import DEFAULTS, flip_byte

pytestmark = pytest.mark.usefixtures("home", "installed_defaults")


def run(*args: str):
    return CliRunner().invoke(models_cli, list(args), catch_exceptions=False)


def test_list_shows_every_model_with_kind_engine_and_path(installed_defaults):
    result = run("list")

    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "KIND", "ENGINE", "ORIGIN", "INSTALLED", "PATH"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(DEFAULTS) | {"qwen2.5-coder-1.5b-instruct"} == set(rows)
    assert str(installed_defaults["silero-vad"]) in rows["silero-vad"]
    assert "opt-in" in rows["qwen2.5-coder-1.5b-instruct"]


def test_verify_passes_on_the_installed_defaults():
    result = run("verify")

    assert result.exit_code == 0, result.output
    assert f"all {len(DEFAULTS)} models verified" in result.stdout


def test_add_then_verify_one(whisper_copy: Path, home: Path):
    added = run(
        "add", "site-whisper", "--kind", "stt", "--engine", "faster-whisper",
        "--path", str(whisper_copy),
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    assert "registered site-whisper" in added.stdout

    result = run("verify", "--name", "site-whisper")

    assert result.exit_code == 0, result.output
    assert f"ok    site-whisper  {whisper_copy}" in result.stdout


def test_verify_exits_1_naming_the_corrupted_file(whisper_copy: Path):
    run("add", "site-whisper", "--kind", "stt", "--engine", "faster-whisper",
        "--path", str(whisper_copy))  # fmt: skip
    flip_byte(whisper_copy / "vocabulary.txt", 10)

    result = run("verify")

    assert result.exit_code == 1
    assert "1 of 7 models failed verification" in result.stderr
    assert str(whisper_copy / "vocabulary.txt") in result.stderr
    assert "FAIL  site-whisper" in result.stdout


def test_verify_of_an_unknown_name_exits_1():
    result = run("verify", "--name", "gpt-5")

    assert result.exit_code == 1
    assert "unknown model 'gpt-5'" in result.stderr


def test_add_rejects_bad_input_without_a_traceback(tmp_path: Path):
    wrong_kind = run("add", "x", "--kind", "asr", "--engine", "e", "--path", str(tmp_path))
    missing = run("add", "x", "--kind", "llm", "--engine", "llama.cpp",
                  "--path", str(tmp_path / "absent.gguf"))  # fmt: skip

    assert wrong_kind.exit_code == 2 and "asr" in wrong_kind.stderr
    assert missing.exit_code == 1
    assert "does not exist" in missing.stderr and "Traceback" not in missing.output


def test_install_of_a_default_just_prepares_it(installed_defaults):
    result = run("install", "silero-vad")

    assert result.exit_code == 0, result.output
    assert str(installed_defaults["silero-vad"]) in result.stdout


def test_install_reports_a_pip_failure(tmp_path: Path, home: Path):
    empty_wheelhouse = tmp_path / "wheels"
    empty_wheelhouse.mkdir()

    result = run("install", "qwen2.5-coder-1.5b-instruct", "--wheelhouse", str(empty_wheelhouse))

    assert result.exit_code == 1
    assert "pip failed" in result.stderr
    assert not (home / "models.yaml").exists()  # not recorded as installed


def test_install_refuses_operator_models(whisper_copy: Path):
    run("add", "site-whisper", "--kind", "stt", "--engine", "faster-whisper",
        "--path", str(whisper_copy))  # fmt: skip

    result = run("install", "site-whisper")

    assert result.exit_code == 1
    assert "trunkline models add" in result.stderr


def test_prepare_succeeds_when_everything_is_installed():
    result = run("prepare")

    assert result.exit_code == 0, result.output
    assert sum(line.startswith("ok ") for line in result.stdout.splitlines()) == len(DEFAULTS)


def test_the_real_trunkline_script(home: Path, whisper_copy: Path):
    script = Path(sys.executable).with_name("trunkline")
    assert script.exists(), f"{script} missing: install the project with `pip install -e .`"
    env = {**os.environ, "TRUNKLINE_HOME": str(home)}

    def trunkline(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(script), "models", *args], env=env, capture_output=True, text=True, timeout=120
        )

    ok = trunkline("verify")
    assert ok.returncode == 0, ok.stderr
    assert f"all {len(DEFAULTS)} models verified" in ok.stdout

    added = trunkline("add", "whisper-tiny.en", "--kind", "stt", "--engine", "faster-whisper",
                      "--path", str(whisper_copy))  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "overrides the embedded model" in added.stdout
    (whisper_copy / "config.json").write_text("{}")

    broken = trunkline("verify", "--name", "whisper-tiny.en")

    assert broken.returncode == 1
    assert str(whisper_copy / "config.json") in broken.stderr
    registered = yaml.safe_load((home / "models.yaml").read_text())["models"]
    assert list(registered) == ["whisper-tiny.en"]
