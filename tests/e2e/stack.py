"""`trunkline serve --no-ray` as a subprocess, for the end-to-end tests and benchmarks.

Its own TRUNKLINE_HOME (so its SQLite call records are fresh), a config with the
embedded CPU models, SIP/RTP on given loopback ports (16000-16999 in the tests), HTTP
on a free port, and short timeouts. Startup and shutdown are bounded in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

REPO = Path(__file__).resolve().parents[2]
TRUNKLINE = Path(sys.executable).with_name("trunkline")

CPU_ENGINES = {
    "stt": {
        "engine": "faster-whisper",
        "model": "whisper-tiny.en",
        "options": {"device": "cpu", "compute_type": "int8", "cpu_threads": 2},
    },
    "llm": {
        "engine": "llama-cpp",
        "model": "qwen2.5-coder-0.5b-instruct",
        "options": {"n_ctx": 2048},
    },
    "tts": {
        "engine": "piper",
        "model": "piper-joe-medium",
        "options": {"voice_name": "joe"},
        "fallback": {"engine": "espeak", "options": {"voice": "en-us"}},
    },
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Stack:
    home: Path
    http_port: int
    sip_port: int
    process: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.home / "serve.log"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def uri(self) -> str:
        return f"sip:agent@127.0.0.1:{self.sip_port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def api_key(self) -> str:
        """The admin key `trunkline serve` keeps for the local CLI ($TRUNKLINE_HOME/cli.key)."""
        path = self.home / "cli.key"
        return path.read_text().strip() if path.exists() else ""

    async def get(self, path: str, **params: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        async with httpx.AsyncClient(timeout=10, headers=headers) as http:
            return await http.get(self.base + path, params=params)

    async def record(self, call_id: str, timeout_s: float = 20.0) -> dict[str, Any]:
        """The saved record of a finished call (polls until the session has saved it)."""
        deadline = time.monotonic() + timeout_s
        last: Any = None
        while time.monotonic() < deadline:
            response = await self.get(f"/api/calls/{call_id}")
            last = response.status_code
            if response.status_code == 200 and not response.json()["live"]:
                return response.json()
            await asyncio.sleep(0.25)
        raise AssertionError(
            f"no saved record of {call_id} (last HTTP {last})\n{self.log()[-3000:]}"
        )

    async def calls(self) -> list[dict[str, Any]]:
        response = await self.get("/api/calls", limit=50)
        response.raise_for_status()
        return response.json()["calls"]


def write_config(home: Path, http_port: int, sip_port: int, rtp: tuple[int, int],
                 agent: dict[str, Any], engines: dict[str, Any] | None = None) -> Path:  # fmt: skip
    config = {
        "profile": "cpu",
        "http": {"host": "127.0.0.1", "port": http_port},
        "timeouts": {"first_output_s": 30, "total_s": 120},
        "engines": engines or CPU_ENGINES,
        "sip": {
            "bind": f"127.0.0.1:{sip_port}",
            "rtp_ports": f"{rtp[0]}-{rtp[1]}",
            "media_timeout_s": 10,
        },
        "agent": agent,
    }
    path = home / "stack.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def launch_stack(home: Path, *, sip_port: int, rtp: tuple[int, int],
                 agent: dict[str, Any], extra_args: tuple[str, ...] = (),
                 engines: dict[str, Any] | None = None) -> Stack:  # fmt: skip
    """Start the server process (not yet ready); `extra_args` go to `trunkline serve`,
    `engines` replaces CPU_ENGINES."""
    if not TRUNKLINE.exists():
        raise RuntimeError(f"{TRUNKLINE} missing: `pip install -e .` the project into the venv")
    home.mkdir(parents=True, exist_ok=True)
    stack = Stack(home, free_port(), sip_port)
    config = write_config(home, stack.http_port, sip_port, rtp, agent, engines)
    env = {**os.environ, "TRUNKLINE_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    env.pop("DATABASE_URL", None)  # the default SQLite file under this TRUNKLINE_HOME
    with stack.log_path.open("wb") as log:
        stack.process = subprocess.Popen(
            [str(TRUNKLINE), "serve", "--no-ray", "--config", str(config), *extra_args],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    return stack


async def start_stack(home: Path, *, sip_port: int, rtp: tuple[int, int],
                      agent: dict[str, Any], ready_timeout_s: float = 180.0,
                      extra_args: tuple[str, ...] = (),
                      engines: dict[str, Any] | None = None) -> Stack:  # fmt: skip
    """Start the server and wait for /healthz 200; fails with its log if it does not come up."""
    stack = launch_stack(home, sip_port=sip_port, rtp=rtp, agent=agent, extra_args=extra_args,
                         engines=engines)  # fmt: skip
    assert stack.process is not None
    deadline = time.monotonic() + ready_timeout_s
    while time.monotonic() < deadline:
        if stack.process.poll() is not None:
            raise RuntimeError(f"trunkline serve exited {stack.process.returncode}:\n{stack.log()}")
        with contextlib.suppress(httpx.HTTPError):
            if (await stack.get("/healthz")).status_code == 200:
                return stack
        await asyncio.sleep(0.5)
    await stop_stack(stack)
    raise RuntimeError(f"trunkline serve not ready in {ready_timeout_s:g} s:\n{stack.log()}")


async def stop_stack(stack: Stack, timeout_s: float = 30.0) -> int | None:
    """SIGTERM, as an init system would; returns the exit code (killed if it hangs)."""
    proc = stack.process
    if proc is None or proc.poll() is not None:
        return None if proc is None else proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.to_thread(proc.wait, timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        await asyncio.to_thread(proc.wait, 10)
        log = stack.log()
        raise AssertionError(
            f"trunkline serve ignored SIGTERM for {timeout_s:g} s:\n{log}"
        ) from None
    return proc.returncode
