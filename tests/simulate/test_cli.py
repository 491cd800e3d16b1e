"""`trunkline store-sim` with its phone and `trunkline simulate --workflow`, as a user runs
them (subprocesses): the phone answers at the address it prints, bad names and an
unreachable agent are clear errors, and nothing is left listening afterwards."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import pytest

from telephony.interface import IncomingCall
from telephony.sip_endpoint import SipConfig, SipEndpoint
from tests.simulate.conftest import CALLER_RTP, free_port

STORE_SIM = "import sys; from agent.cli.store_sim_cmd import store_sim; store_sim(sys.argv[1:])"
SIMULATE = "import sys; from agent.cli.simulate_cmd import simulate; simulate(sys.argv[1:])"


def _start_store_sim(tmp_path, *extra: str) -> tuple[subprocess.Popen, list[str]]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            STORE_SIM,
            "--ssh",
            f"127.0.0.1:{free_port()}",
            "--http",
            f"127.0.0.1:{free_port()}",
            "--state-dir",
            str(tmp_path),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if line.strip() == "ready":
            return proc, lines
    proc.kill()
    raise AssertionError(f"store-sim did not get ready: {lines} {proc.stderr.read()}")


def _stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


async def _refuse(incoming: IncomingCall) -> None:
    await incoming.reject(486, "Busy Here")


async def test_store_sim_starts_the_phone_which_answers_calls(tmp_path):
    phone_port = free_port()
    proc, lines = _start_store_sim(
        tmp_path, "--phone-bind", f"127.0.0.1:{phone_port}", "--phone-persona", "busy"
    )
    try:
        assert f"phone: sip:127.0.0.1:{phone_port} answering as busy" in lines
        caller = SipEndpoint(SipConfig(bind=("127.0.0.1", 0), rtp_ports=CALLER_RTP, user="maya"))
        await caller.start(_refuse)
        try:
            call = await caller.place_call(
                f"sip:store1042@127.0.0.1:{phone_port}", ring_timeout_s=10
            )
            assert call.end_reason is None  # answered
            await call.hangup()
        finally:
            await caller.stop()
    finally:
        assert _stop(proc) == 0


def test_store_sim_without_phone_and_with_a_bad_persona(tmp_path):
    proc, lines = _start_store_sim(tmp_path, "--no-phone")
    try:
        assert not [line for line in lines if line.startswith("phone:")]
    finally:
        _stop(proc)
    bad = subprocess.run(
        [sys.executable, "-c", STORE_SIM, "--phone-persona", "grumpy"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode != 0 and "unknown persona 'grumpy'" in bad.stderr


def _simulate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", SIMULATE, *args], capture_output=True, text=True, timeout=180
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--workflow", "KBA9999"), "unknown workflow 'KBA9999'"),
        (("--workflow", "KBA3813", "--persona", "grumpy"), "unknown persona 'grumpy'"),
        (("--workflow", "KBA3813", "--say", "hello"), "takes no --say"),
    ],
)
def test_simulate_workflow_rejects_bad_input_clearly(args, message):
    result = _simulate(*args)
    assert result.returncode != 0 and message in result.stderr


def test_simulate_workflow_says_when_the_agent_is_unreachable_and_cleans_up():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", free_port()))
        closed = probe.getsockname()[1]
    sim_http, sim_ssh, phone = free_port(), free_port(), free_port()
    result = _simulate(
        "--workflow",
        "KBA3813",
        "--server",
        f"http://127.0.0.1:{closed}",
        "--sim-http",
        f"127.0.0.1:{sim_http}",
        "--sim-ssh",
        f"127.0.0.1:{sim_ssh}",
        "--phone-sip",
        f"127.0.0.1:{phone}",
    )
    assert result.returncode != 0
    assert f"agent at http://127.0.0.1:{closed} unreachable" in result.stderr
    for port in (sim_http, sim_ssh):  # the simulator it started is gone again
        with socket.socket() as again:
            again.bind(("127.0.0.1", port))
