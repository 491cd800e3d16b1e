"""`trunkline voices ...` against a real HTTP server (uvicorn on 127.0.0.1, cpu profile)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi import FastAPI

from agent.cli.voices_cmd import voices
from agent.controlplane import apikeys
from agent.controlplane.db import ControlPlaneStore
from agent.controlplane.models import Voice
from agent.controlplane.voice_admin import voice_admin_for
from agent.controlplane.voices_api import build_voices_router
from serving.tts.espeak_engine import EspeakTTS
from tests.voices.conftest import encode, free_port, serve_in_thread


@pytest.fixture
def server(tmp_path: Path):
    """(url, admin key, read key, db url) of a running voices API."""
    db_url = f"sqlite:///{tmp_path / 'cp.db'}"

    async def keys() -> tuple[str, str]:
        async with ControlPlaneStore(db_url) as store, store.session() as s:
            admin = (await apikeys.create_key(s, scope="admin")).key
            read = (await apikeys.create_key(s, scope="read")).key
        return admin, read

    admin_key, read_key = asyncio.run(keys())
    app = FastAPI()
    app.include_router(
        build_voices_router(ControlPlaneStore(db_url), voice_admin_for(EspeakTTS())),
        prefix="/api",
    )
    with serve_in_thread(app) as url:
        yield url, admin_key, read_key, db_url


def _run(url: str, key: str | None, *args: str):
    base = ["--url", url, "--timeout", "60"] + (["--api-key", key] if key else [])
    return CliRunner().invoke(voices, base + list(args), env={"TRUNKLINE_API_KEY": ""})


def test_cli_add_list_preview_rm_on_cpu_profile(server, reference_speech, tmp_path):
    url, admin, read, db_url = server
    ref = tmp_path / "me.wav"
    ref.write_bytes(encode(*reference_speech, "WAV"))
    short = tmp_path / "short.wav"
    pcm, rate = reference_speech
    short.write_bytes(encode(pcm[:rate], rate, "WAV"))

    result = _run(url, read, "list")
    assert result.exit_code == 0 and "no voices" in result.output

    result = _run(url, admin, "add", "me", str(ref), "--name", "Me")
    assert result.exit_code == 1
    assert "409: this TTS engine (espeak) does not support voice cloning" in result.output

    result = _run(url, admin, "add", "me", str(short))
    assert result.exit_code == 1 and "422" in result.output and "needs 5-60 s" in result.output

    result = _run(url, admin, "add", "Not An Id", str(ref))
    assert result.exit_code == 1 and "422" in result.output and "voice_id" in result.output

    async def add_row() -> None:  # a clone made on the gpu profile, same database
        async with ControlPlaneStore(db_url) as store, store.session() as s:
            s.add(Voice(id="gpu-made", name="GPU made", conds_path="/x", sha256="0" * 64))

    asyncio.run(add_row())
    result = _run(url, read, "list")
    assert result.exit_code == 0 and result.output.startswith("gpu-made\tGPU made\tchatterbox")

    out = tmp_path / "p.wav"
    result = _run(url, admin, "preview", "gpu-made", "-o", str(out))
    assert result.exit_code == 1 and "does not support voice cloning" in result.output
    assert not out.exists()

    result = _run(url, read, "rm", "gpu-made")
    assert result.exit_code == 1 and "403" in result.output
    result = _run(url, admin, "rm", "gpu-made")
    assert result.exit_code == 0 and "removed gpu-made" in result.output
    result = _run(url, admin, "rm", "gpu-made")
    assert result.exit_code == 1 and "404" in result.output


def test_cli_without_key_or_server_says_so(tmp_path):
    result = _run("http://127.0.0.1:9", None, "list")
    assert result.exit_code == 2 and "no API key" in result.output
    result = _run(f"http://127.0.0.1:{free_port()}", "tl_x", "list")
    assert result.exit_code == 1 and "cannot reach" in result.output
