"""`trunkline store-sim` as a user starts it: a subprocess that prints its token and the
known_hosts line, serves the APIs, and keeps its host key across restarts."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import httpx

from tests.storesim.simulator import free_port

LAUNCH = "import sys; from agent.cli.store_sim_cmd import store_sim; store_sim(sys.argv[1:])"


def start(state_dir, ssh_port: int, http_port: int, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            LAUNCH,
            "--ssh",
            f"127.0.0.1:{ssh_port}",
            "--http",
            f"127.0.0.1:{http_port}",
            "--state-dir",
            str(state_dir),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_until_ready(proc: subprocess.Popen, timeout_s: float = 60) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if line.strip() == "ready":
            return lines
    proc.kill()
    raise AssertionError(f"store-sim did not get ready: {lines} {proc.stderr.read()}")


def stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


def test_cli_prints_token_and_known_hosts_and_serves(tmp_path):
    ssh_port, http_port = free_port(), free_port()
    proc = start(tmp_path, ssh_port, http_port, "--token", "cli-secret")
    try:
        lines = read_until_ready(proc)
        assert "token: cli-secret" in lines
        known = [line for line in lines if line.startswith("known_hosts: ")]
        assert len(known) == 1
        host_line = known[0].removeprefix("known_hosts: ")
        assert host_line.startswith(f"[127.0.0.1]:{ssh_port} ssh-ed25519 ")
        assert (tmp_path / "known_hosts").read_text().strip() == host_line
        store = httpx.get(
            f"http://127.0.0.1:{http_port}/stores/1/1042",
            headers={"Authorization": "Bearer cli-secret"},
            trust_env=False,
        ).json()
        assert store["ssh_port"] == ssh_port
    finally:
        assert stop(proc) == 0

    # Restarting keeps the host key, so the agent's known_hosts stays valid.
    proc = start(tmp_path, ssh_port, http_port)
    try:
        lines = read_until_ready(proc)
        assert "token: dev-token" in lines
        assert f"known_hosts: {host_line}" in lines
    finally:
        stop(proc)


def test_cli_rejects_an_unknown_scenario_clearly(tmp_path):
    proc = start(tmp_path, free_port(), free_port(), "--scenario", "no_such_thing")
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "unknown scenario 'no_such_thing'" in err
    assert "paper_out" in err  # lists the built-in ones


def test_cli_reports_a_port_in_use_clearly(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", free_port()))
        taken.listen(1)
        busy = taken.getsockname()[1]
        for ssh_port, http_port in ((busy, free_port()), (free_port(), busy)):
            proc = start(tmp_path, ssh_port, http_port)
            _out, err = proc.communicate(timeout=60)
            assert proc.returncode != 0
            assert "could not start" in err or "address already in use" in err.lower(), err
