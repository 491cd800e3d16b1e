"""What `trunkline call` reports: the client's timings merged with the server's record.

The server's record (`GET /api/calls/{call_id}`, keyed by the SIP Call-ID) has what
only it knows: its transcription of the caller, the text the caller heard, and the
stage timings. Client turn i is matched with the server's turn i.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from agent.app.dialer import DialResult
from agent.controlplane.local_key import cli_api_key

DEFAULT_API_PORTS = (8000, 8001)  # --no-ray: the serve port; with Ray: the agent port


def api_headers() -> dict[str, str]:
    """The agent API's Authorization header: $TRUNKLINE_API_KEY, else the local cli.key
    that `trunkline serve` keeps on its machine (agent.controlplane.local_key)."""
    key = cli_api_key()
    return {"Authorization": f"Bearer {key}"} if key else {}


async def find_api(host: str, explicit: str | None) -> str | None:
    """The agent API base URL: `explicit`, else the first default port that answers."""
    candidates = [explicit] if explicit else [f"http://{host}:{p}" for p in DEFAULT_API_PORTS]
    async with httpx.AsyncClient(timeout=2.0, headers=api_headers()) as http:
        for base in candidates:
            try:
                response = await http.get(f"{base.rstrip('/')}/api/calls", params={"limit": 1})
            except httpx.HTTPError:
                continue
            if response.status_code in (401, 403):  # it is the API; the key is missing or wrong
                return base.rstrip("/")
            if response.status_code == 200 and "calls" in response.json():
                return base.rstrip("/")
    return None


async def fetch_record(api: str, call_id: str, wait_s: float = 15.0) -> dict[str, Any] | None:
    """The server's record of the call once it is saved (it is, just after hang-up)."""
    deadline = time.monotonic() + wait_s
    async with httpx.AsyncClient(timeout=5.0, headers=api_headers()) as http:
        while time.monotonic() < deadline:
            try:
                response = await http.get(f"{api}/api/calls/{call_id}")
            except httpx.HTTPError:
                return None
            if response.status_code == 200:
                record = response.json()
                if not record.get("live"):
                    return record
            elif response.status_code != 404:
                return None
            await asyncio.sleep(0.25)
    return None


def match_turns(starts: list[float], server_turns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The server turn answering each client utterance (`starts`: monotonic send times).

    The server may end a turn at a pause inside one utterance and take the rest as a
    second turn: on this host (the server's monotonic stamps fall inside the call)
    turns are matched by time, the texts of a split utterance joined; otherwise by order.
    """
    stamps = [t.get("speech_end_monotonic") for t in server_turns]
    same_clock = bool(starts) and all(
        s is not None and starts[0] - 1.0 <= s <= starts[-1] + 3600 for s in stamps
    )
    if not same_clock:
        return [server_turns[i] if i < len(server_turns) else {} for i in range(len(starts))]
    out = []
    for index, start in enumerate(starts):
        end = starts[index + 1] if index + 1 < len(starts) else float("inf")
        mine = [t for t, s in zip(server_turns, stamps, strict=True) if start <= s < end]
        if not mine:
            out.append({})
            continue
        answered = [t for t in mine if t.get("turn_latency_ms") is not None] or mine
        merged = dict(answered[-1])
        merged["caller_text"] = " ".join(t["caller_text"] for t in mine if t.get("caller_text"))
        out.append(merged)
    return out


def build_report(result: DialResult, record: dict[str, Any] | None) -> dict[str, Any]:
    matched = match_turns([t.sent_at for t in result.turns], (record or {}).get("turns", []))
    turns = []
    for turn, server in zip(result.turns, matched, strict=True):
        turns.append(
            {
                "caller_text": server.get("caller_text"),
                "agent_text": server.get("agent_text"),
                "turn_latency_ms": turn.turn_latency_ms,
                "stages_ms": server.get("stages_ms", {}),
                "server_turn_latency_ms": server.get("turn_latency_ms"),
            }
        )
    transcript = (record or {}).get("transcript", [])
    greeting = [e["text"] for e in transcript if e.get("kind") == "greeting"]
    return {
        "call_id": result.call_id,
        "turns": turns,
        "end_reason": (record or {}).get("end_reason") or result.end_reason,
        "client_end_reason": result.end_reason,
        "greeting": greeting[0] if greeting else None,
        "transcript": transcript,
        "server_record": record is not None,
    }


def format_report(report: dict[str, Any], record_path: str | None, seconds: float) -> str:
    lines = [f"call {report['call_id']}  (end: {report['end_reason']})"]
    if report["greeting"]:
        lines.append(f"  agent:  {report['greeting']}")
    for number, turn in enumerate(report["turns"], 1):
        latency = turn["turn_latency_ms"]
        lines.append(
            f"turn {number}: latency {latency:.0f} ms on the wire"
            if latency is not None
            else f"turn {number}: no reply heard"
        )
        if turn["stages_ms"]:
            stages = ", ".join(f"{k} {v:.0f}" for k, v in turn["stages_ms"].items())
            lines.append(f"  server stages (ms after end of speech): {stages}")
        lines.append(f"  caller: {turn['caller_text'] or '(no server record)'}")
        lines.append(f"  agent:  {turn['agent_text'] or '(nothing heard)'}")
    if not report["server_record"]:
        lines.append("(the agent API was not reachable: texts and stages unknown; see --api)")
    if record_path:
        lines.append(f"recorded {seconds:.1f} s of agent audio to {record_path}")
    return "\n".join(lines)
