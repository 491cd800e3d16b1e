"""`trunkline echo-test`, run as a user would, called by sipp: the caller hears
its own audio back, and a tone for each DTMF digit it sends."""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.telephony.audio_checks import dominant_frequency, level_dbfs, tone, voiced
from tests.telephony.peers import RtpCapture, render, run_sipp, write_rtp_pcap

ECHO_PORT = 15070
SIPP_PORT = 15480
SIPP_MEDIA = 15490


def trunkline_command() -> list[str]:
    exe = shutil.which("trunkline", path=str(Path(sys.executable).parent))
    if exe is None:
        raise RuntimeError("the trunkline command is not installed: pip install -e .")
    return [exe]


@pytest.fixture
async def echo_server():
    proc = await asyncio.create_subprocess_exec(
        *trunkline_command(), "echo-test", "--bind", f"127.0.0.1:{ECHO_PORT}",
        "--rtp-ports", "15800-15850",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    line = await asyncio.wait_for(proc.stderr.readline(), 20)
    assert b"listening on sip:echo@127.0.0.1:15070" in line, line
    yield proc
    proc.terminate()
    await asyncio.wait_for(proc.wait(), 10)


async def test_echo_test_echoes_audio_and_answers_digits(echo_server, tmp_path):
    pcap = write_rtp_pcap(tmp_path / "a.pcap", tone(1000, 2.0, -12), 0, dtmf="9")
    scenario = render("uac_tone.xml", tmp_path / "uac.xml", pt=0, codec="PCMU", pcap=pcap,
                      hold_ms=3500)  # fmt: skip
    async with RtpCapture(tmp_path / "rtp.pcap", SIPP_MEDIA) as capture:
        result = await run_sipp(scenario, f"127.0.0.1:{ECHO_PORT}", port=SIPP_PORT,
                                media_port=SIPP_MEDIA, extra=["-s", "echo", "-m", "1"])  # fmt: skip
    result.check()
    back = voiced(capture.audio(0))
    frames = back[: len(back) // 160 * 160].reshape(-1, 160)
    is_echo = np.array([abs(dominant_frequency(f) - 1000) < 60 for f in frames])
    echoed = frames[is_echo].ravel()
    assert len(echoed) >= 1.5 * 8000
    assert level_dbfs(echoed) == pytest.approx(-15, abs=1.0)
    # the rest: the digit's own dual tone (852 + 1477 Hz for '9'), 160 ms of it
    answer = frames[~is_echo].ravel()
    assert len(answer) >= 0.1 * 8000
    spectrum = np.abs(np.fft.rfft(answer.astype(float)))
    freqs = np.fft.rfftfreq(len(answer), 1 / 8000)
    peaks = sorted(freqs[np.argsort(spectrum)[-2:]])
    assert peaks[0] == pytest.approx(852, abs=15) and peaks[1] == pytest.approx(1477, abs=15)


def test_bad_arguments_are_clear_errors():
    from click.testing import CliRunner

    from agent.cli import cli

    runner = CliRunner()
    result = runner.invoke(cli, ["echo-test", "--bind", "nonsense"])
    assert result.exit_code == 2 and "expected HOST:PORT" in result.output
    result = runner.invoke(cli, ["echo-test", "--rtp-ports", "300-200"])
    assert result.exit_code == 2 and "expected START-END" in result.output


async def test_port_in_use_is_a_clear_error(echo_server):
    proc = await asyncio.create_subprocess_exec(
        *trunkline_command(), "echo-test", "--bind", f"127.0.0.1:{ECHO_PORT}",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 1
    assert b"cannot listen for SIP on" in err and b"15070" in err
