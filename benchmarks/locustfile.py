"""Locust users as concurrent callers, over the WebSocket media transport and over SIP.

    trunkline serve --no-ray --ws 127.0.0.1:17080
    locust -f benchmarks/locustfile.py WebSocketCaller --headless -u 2 -r 2 -t 60s \
        --host ws://127.0.0.1:17080/
    TRUNKLINE_LOAD_SIP_URI=sip:agent@127.0.0.1:17060 \
        locust -f benchmarks/locustfile.py SipCaller --headless -u 2 -r 2 -t 60s

(`python benchmarks/load_ws.py` does both for 1, 2 and 4 users and writes the results.)
Each user places one call after another: connect, wait for the greeting to end, say a
pre-rendered espeak-ng question at real time, time the first agent audio after the end
of its voice, hang up.

- WebSocketCaller also counts underruns (gaps > 40 ms in the agent's audio while it
  speaks).
- SipCaller places a real SIP call (INVITE, RTP G.711, BYE) with our SipEndpoint
  dialer, `trunkline call`, in a subprocess of its own: the dialer is asyncio and
  Locust is gevent, and a process per call keeps the two apart. Each user has its own
  SIP port and RTP range (TRUNKLINE_LOAD_SIP_PORT, default 17200, + user number).

Custom events in Locust's stats:
  call / time_to_first_audio   end of caller voice -> first agent audio frame (ms)
  call / held                  one per call; failures say what went wrong
  audio / underrun             one per gap, its length (ms) (WebSocket only)
Every wait is bounded; hosts and SIP URIs must be loopback.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import gevent
from locust import User, constant, events, task
from websocket import ABNF, WebSocket, WebSocketException, create_connection

sys.path.insert(0, str(Path(__file__).resolve().parent))

from load_ws import FRAME_S, SAMPLE_RATE, AgentStream, render_question

FRAME_BYTES = 320
ANSWER_TIMEOUT_S = 60.0  # the agent warms its prompt before answering; slow under load
GREETING_TIMEOUT_S = 30.0
GREETING_DONE_QUIET_S = 1.0  # greeting is pre-synthesized: continuous until it ends
REPLY_TIMEOUT_S = 45.0  # end of question -> first agent audio
REPLY_PAUSE_S = 2.5  # agent quiet this long: the reply is over (a longer stall is not an underrun)
REPLY_MAX_S = 40.0

QUESTION_PCM, QUESTION_VOICE_END_S = render_question()  # once per Locust process
SIP_CALL_TIMEOUT_S = 150.0  # one whole SIP call: answer, greeting, question, reply
SIP_RTP_PER_USER = 20  # RTP ports per SIP user (one call at a time needs two)


class Totals:
    """What the results table needs, collected across users in this process."""

    def __init__(self) -> None:
        self.ttfa_ms: list[float] = []
        self.gaps_ms: list[float] = []
        self.greeting_gaps_ms: list[float] = []  # pre-synthesized audio: transport/clock jitter
        self.calls_held = 0
        self.calls_failed = 0
        self.underrun_calls = 0
        self.in_progress = 0
        self.peak_concurrent = 0
        self.errors: list[str] = []

    def started(self) -> None:
        self.in_progress += 1
        self.peak_concurrent = max(self.peak_concurrent, self.in_progress)


TOTALS = Totals()


class CallFailedError(Exception):
    """The call did not go as a caller expects (no answer, no greeting, no reply)."""


class WebSocketCaller(User):
    wait_time = constant(0.5)

    def on_start(self) -> None:
        url = urlparse(self.host or "")
        if url.scheme != "ws" or url.hostname not in ("127.0.0.1", "localhost"):
            raise ValueError(f"--host must be a loopback ws:// URL, got {self.host!r}")

    @task
    def call(self) -> None:
        TOTALS.started()
        started = time.monotonic()
        ws: WebSocket | None = None
        reader = None
        try:
            ws = create_connection(self.host, timeout=ANSWER_TIMEOUT_S)
            stream = AgentStream()
            self._dial(ws)
            reader = gevent.spawn(_read_agent_audio, ws, stream)
            greeting_start = _wait(lambda: stream.arrivals[0] if stream.arrivals else None,
                                   GREETING_TIMEOUT_S, "no greeting")  # fmt: skip
            _wait(lambda: stream.quiet_since(time.monotonic()) >= GREETING_DONE_QUIET_S or None,
                  GREETING_TIMEOUT_S, "the greeting did not end")  # fmt: skip
            question_start = time.monotonic()
            voice_end = self._say(ws)
            first = _wait(lambda: stream.first_after(voice_end), REPLY_TIMEOUT_S, "no reply")
            ttfa_ms = (first - voice_end) * 1000.0
            self._fire("call", "time_to_first_audio", ttfa_ms)
            TOTALS.ttfa_ms.append(ttfa_ms)
            deadline = first + REPLY_MAX_S
            while time.monotonic() < deadline:  # until the reply is over
                if stream.quiet_since(time.monotonic()) >= REPLY_PAUSE_S:
                    break
                gevent.sleep(0.1)
            greeting_gaps = stream.underruns(greeting_start, question_start, REPLY_PAUSE_S)
            TOTALS.greeting_gaps_ms += [round(g * 1000.0, 1) for g in greeting_gaps]
            gaps = greeting_gaps + stream.underruns(first, time.monotonic(), REPLY_PAUSE_S)
            for gap in gaps:
                self._fire("audio", "underrun", gap * 1000.0)
                TOTALS.gaps_ms.append(gap * 1000.0)
            TOTALS.underrun_calls += bool(gaps)
            ws.send(json.dumps({"type": "hangup"}))
            TOTALS.calls_held += 1
            self._fire("call", "held", (time.monotonic() - started) * 1000.0)
        except (CallFailedError, WebSocketException, OSError) as exc:
            TOTALS.calls_failed += 1
            message = f"{type(exc).__name__}: {exc}"
            if message not in TOTALS.errors and len(TOTALS.errors) < 10:
                TOTALS.errors.append(message)
            self._fire("call", "held", (time.monotonic() - started) * 1000.0, exc)
        finally:
            TOTALS.in_progress -= 1
            if ws is not None:
                ws.close()
            if reader is not None:
                reader.kill(block=False)

    def _dial(self, ws: WebSocket) -> None:
        ws.send(json.dumps({"type": "start", "caller": "locust", "callee": "agent"}))
        reply = json.loads(ws.recv())
        if reply.get("type") != "answered":
            raise CallFailedError(f"not answered: {reply}")

    def _say(self, ws: WebSocket) -> float:
        """Send the question paced at 20 ms a frame; returns when its voice ended."""
        voice_end_frame = int(QUESTION_VOICE_END_S / FRAME_S)
        voice_end = 0.0
        next_at = time.monotonic()
        for index in range(0, len(QUESTION_PCM), FRAME_BYTES):
            gevent.sleep(max(0.0, next_at - time.monotonic()))
            ws.send(QUESTION_PCM[index : index + FRAME_BYTES], opcode=ABNF.OPCODE_BINARY)
            if index // FRAME_BYTES == voice_end_frame:
                voice_end = time.monotonic() + (QUESTION_VOICE_END_S % FRAME_S)
            next_at += FRAME_S
        return voice_end or time.monotonic()

    def _fire(self, kind: str, name: str, ms: float, exc: Exception | None = None) -> None:
        self.environment.events.request.fire(
            request_type=kind,
            name=name,
            response_time=ms,
            response_length=0,
            exception=exc,
            context={},
        )


_sip_users = itertools.count()


def _question_wav() -> Path:
    """The question up to the end of its voice, as a WAV for `trunkline call` (trailing
    silence would move its end-of-speech mark)."""
    path = Path(tempfile.gettempdir()) / f"trunkline-locust-question-{os.getpid()}.wav"
    if not path.exists():
        voiced = QUESTION_PCM[: int(QUESTION_VOICE_END_S * SAMPLE_RATE) * 2]
        with wave.open(str(path), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(SAMPLE_RATE)
            out.writeframes(voiced)
    return path


class SipCaller(User):
    """A caller over real SIP: one `trunkline call` after another."""

    wait_time = constant(0.5)

    def on_start(self) -> None:
        self.uri = os.environ.get("TRUNKLINE_LOAD_SIP_URI", "")
        if not self.uri.startswith("sip:") or "@127.0.0.1:" not in self.uri:
            raise ValueError(f"TRUNKLINE_LOAD_SIP_URI must be a loopback SIP URI: {self.uri!r}")
        number = next(_sip_users)
        base = int(os.environ.get("TRUNKLINE_LOAD_SIP_PORT", "17200"))
        self.bind = f"127.0.0.1:{base + number}"
        low = base + 100 + number * SIP_RTP_PER_USER
        self.rtp_ports = f"{low}-{low + SIP_RTP_PER_USER - 1}"
        self.wav = _question_wav()

    @task
    def call(self) -> None:
        TOTALS.started()
        started = time.monotonic()
        command = [
            sys.executable, "-m", "agent.cli.call_cmd", "--wav", str(self.wav),
            "--to", self.uri, "--json", "--timeout", str(REPLY_TIMEOUT_S),
            "--bind", self.bind, "--rtp-ports", self.rtp_ports,
            "--api", os.environ.get("TRUNKLINE_LOAD_API", "http://127.0.0.1:1"),
        ]  # fmt: skip
        try:
            done = subprocess.run(
                command, cwd=Path(__file__).resolve().parent.parent, capture_output=True,
                text=True, timeout=SIP_CALL_TIMEOUT_S, check=False,
            )  # fmt: skip
            if done.returncode != 0:
                raise CallFailedError(f"trunkline call exited {done.returncode}: "
                                      f"{done.stderr.strip()[-300:]}")  # fmt: skip
            report = json.loads(done.stdout)
            turns = report.get("turns") or []
            ttfa_ms = turns[0].get("turn_latency_ms") if turns else None
            if ttfa_ms is None:
                raise CallFailedError(f"no reply: {report.get('end_reason')}")
            self._fire("call", "time_to_first_audio", float(ttfa_ms))
            TOTALS.ttfa_ms.append(float(ttfa_ms))
            TOTALS.calls_held += 1
            self._fire("call", "held", (time.monotonic() - started) * 1000.0)
        except (CallFailedError, subprocess.TimeoutExpired, ValueError, OSError) as exc:
            TOTALS.calls_failed += 1
            message = f"{type(exc).__name__}: {exc}"
            if message not in TOTALS.errors and len(TOTALS.errors) < 10:
                TOTALS.errors.append(message)
            self._fire("call", "held", (time.monotonic() - started) * 1000.0, exc)
        finally:
            TOTALS.in_progress -= 1

    def _fire(self, kind: str, name: str, ms: float, exc: Exception | None = None) -> None:
        self.environment.events.request.fire(
            request_type=kind, name=name, response_time=ms, response_length=0,
            exception=exc, context={},
        )  # fmt: skip


def _read_agent_audio(ws: WebSocket, stream: AgentStream) -> None:
    """Timestamp every agent audio frame as it arrives, until the call ends."""
    try:
        while True:
            opcode, data = ws.recv_data()
            if opcode == ABNF.OPCODE_BINARY:
                stream.add(time.monotonic())
            elif opcode == ABNF.OPCODE_TEXT and json.loads(data).get("type") == "hangup":
                return
            elif opcode == ABNF.OPCODE_CLOSE:
                return
    except (WebSocketException, OSError, ValueError):
        return


def _wait(ready: Any, timeout_s: float, what: str) -> Any:
    """Poll `ready()` until it returns something truthy, at most `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = ready()
        if value:
            return value
        gevent.sleep(0.01)
    raise CallFailedError(f"{what} within {timeout_s:g} s")


@events.quitting.add_listener
def _write_summary(environment: Any, **_: Any) -> None:
    path = os.environ.get("TRUNKLINE_LOAD_SUMMARY")
    if not path:
        return
    runner = environment.runner
    users = getattr(runner, "target_user_count", None) or getattr(runner, "user_count", 0)
    summary = {
        "users": users,
        "calls_held": TOTALS.calls_held,
        "calls_failed": TOTALS.calls_failed,
        "peak_concurrent": TOTALS.peak_concurrent,
        "underrun_calls": TOTALS.underrun_calls,
        "ttfa_ms": [round(x, 1) for x in TOTALS.ttfa_ms],
        "gaps_ms": [round(x, 1) for x in TOTALS.gaps_ms],
        "greeting_gaps_ms": TOTALS.greeting_gaps_ms,
        "errors": TOTALS.errors,
    }
    Path(path).write_text(json.dumps(summary, indent=1))
