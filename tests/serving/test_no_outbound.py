"""`trunkline serve` (Ray Serve, cpu profile) touches nothing but loopback.

The whole process tree (driver, GCS, raylet, dashboard head, agents, replicas,
espeak-ng) runs under `strace -f` from start-up through one request per model to
shutdown. Every connect/sendto/sendmsg/bind with an IP address is checked: no
packet or connection may go to a non-loopback address (cloud metadata at
169.254.169.254, 8.8.8.8 for "which IP am I", DNS to the resolver, telemetry), and
nothing may listen on a non-loopback interface. strace sees attempts that fail
before a packet leaves (e.g. no route), which a packet capture would miss, and it
only sees our processes, so other traffic on a shared machine cannot confuse it.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from serving import ray_app
from serving.audio import encode_wav
from serving.factory import RaySettings
from tests.serving.test_http_app import free_port
from tests.speech import speak

_ADDRESS = re.compile(
    r"^(?P<pid>\d+)\s+(?P<call>connect|sendto|sendmsg|bind)\(.*?"
    r'(?:sin_port=htons\((?P<port4>\d+)\), sin_addr=inet_addr\("(?P<ip4>[^"]+)"\)'
    r'|sin6_port=htons\((?P<port6>\d+)\).*?inet_pton\(AF_INET6, "(?P<ip6>[^"]+)")'
)


def off_loopback(strace_log: str) -> list[str]:
    """strace lines that reach (or listen on) anything but loopback."""
    bad = []
    for line in strace_log.splitlines():
        m = _ADDRESS.match(line)
        if m is None:
            continue
        ip = ipaddress.ip_address(m["ip4"] or m["ip6"])
        mapped = getattr(ip, "ipv4_mapped", None)
        ip = mapped or ip
        if ip.is_loopback:
            continue
        if m["call"] == "bind" and ip.is_unspecified and int(m["port4"] or m["port6"]) == 0:
            continue  # an outgoing socket's ephemeral port: where it goes is checked above
        bad.append(line[:300])
    return bad


pytestmark = pytest.mark.slow


def test_the_parser_flags_what_it_should() -> None:
    log = "\n".join(
        [
            '1 connect(6, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("8.8.8.8")}'
            ", 16) = 0",
            '2 connect(7, {sa_family=AF_INET, sin_port=htons(80), sin_addr=inet_addr("127.0.0.1")}'
            ", 16) = 0",
            "3 connect(7, {sa_family=AF_INET6, sin6_port=htons(80), sin6_flowinfo=htonl(0), "
            'inet_pton(AF_INET6, "::ffff:169.254.169.254", &sin6_addr), sin6_scope_id=0}, 28) = -1',
            '4 bind(9, {sa_family=AF_INET, sin_port=htons(8000), sin_addr=inet_addr("0.0.0.0")}'
            ", 16) = 0",
            '5 connect(3, {sa_family=AF_UNIX, sun_path="/var/run/nscd/socket"}, 110) = -1',
        ]
    )
    assert [line.split()[0] for line in off_loopback(log)] == ["1", "3", "4"]


def test_ray_environment_is_set_up_to_stay_quiet(tmp_path: Path, monkeypatch) -> None:
    """What test_serve_with_ray... relies on, checked where a shared HOME cannot hide it:
    without ~/ray_bootstrap_config.yaml Ray's dashboard probes 169.254.169.254 and
    resolves metadata.google.internal (seen under strace), so trunkline writes one."""
    monkeypatch.setattr(ray_app, "BOOTSTRAP_CONFIG", tmp_path / "ray_bootstrap_config.yaml")
    monkeypatch.setattr(ray_app, "RAY_TOKEN_FILE", tmp_path / ".ray" / "auth_token")
    for key in ("RAY_USAGE_STATS_ENABLED", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_AUTH_MODE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    ray_app.quiet_ray_environment(RaySettings())
    assert yaml.safe_load(ray_app.BOOTSTRAP_CONFIG.read_text()) == {"provider": {"type": "local"}}
    assert os.environ["RAY_USAGE_STATS_ENABLED"] == "0"
    assert os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"
    assert os.environ["ORT_DISABLE_TELEMETRY"] == "1"
    token = ray_app.RAY_TOKEN_FILE
    assert len(token.read_text()) == 64 and token.stat().st_mode & 0o777 == 0o600


def test_serve_with_ray_makes_no_outbound_attempt(tmp_path: Path) -> None:
    strace = shutil.which("strace")
    assert strace, "this test needs strace (Debian package strace)"
    trunkline = Path(sys.executable).parent / "trunkline"
    assert trunkline.exists(), f"{trunkline} missing: install the project (pip install -e .)"
    log, out = tmp_path / "strace.log", tmp_path / "serve.out"
    port = free_port()
    env = dict(os.environ)
    for key in ("RAY_USAGE_STATS_ENABLED", "ORT_DISABLE_TELEMETRY", "RAY_AUTH_MODE"):
        env.pop(key, None)  # prove `trunkline serve` sets what it needs by itself
    trace = [strace, "-f", "-qq", "-e", "trace=connect,sendto,sendmsg,bind", "-o", str(log)]
    with out.open("w") as sink:
        tracer = subprocess.Popen(
            [*trace, str(trunkline), "serve", "--port", str(port)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group, so cleanup hits only ours
        )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_healthy(base, tracer, out, timeout_s=300)
        with httpx.Client(base_url=base, timeout=120, trust_env=False) as http:
            pcm, rate = speak("Hello printer.")
            stt = http.post(
                "/v1/audio/transcriptions", files={"file": ("a.wav", encode_wav(pcm, rate))}
            )
            tts = http.post("/v1/audio/speech", json={"input": "Hello.", "voice": "joe"})
            llm = http.post(
                "/v1/chat/completions",
                json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4},
            )
            assert [r.status_code for r in (stt, tts, llm)] == [200, 200, 200]
        time.sleep(5)  # give delayed reporters (usage, telemetry threads) their chance
        serve_pid = _child_of(tracer.pid)
        os.kill(serve_pid, signal.SIGTERM)
        tracer.wait(timeout=90)
    finally:
        if tracer.poll() is None:
            os.killpg(tracer.pid, signal.SIGKILL)
            tracer.wait(timeout=30)
    text = log.read_text()
    assert "htons(" in text, "strace recorded no socket calls at all: is tracing working?"
    assert off_loopback(text) == [], "\n".join(off_loopback(text)[:20])


def _wait_healthy(base: str, tracer: subprocess.Popen, out: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if tracer.poll() is not None:
            raise AssertionError(f"trunkline serve exited early:\n{out.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base}/healthz", timeout=2, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise AssertionError(f"not healthy after {timeout_s} s:\n{out.read_text()[-3000:]}")


def _child_of(pid: int) -> int:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    assert children, "strace has no child process"
    return int(children[0])
