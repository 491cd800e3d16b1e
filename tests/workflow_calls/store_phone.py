"""A scripted store employee on a real SIP phone, for Maya's outbound calls.

It answers the store's SIP URI, listens to the agent (voiced audio, then quiet), and
when the agent waits for a reply, says the scripted line for that workflow step with
espeak-ng speech through a mu-law line, doing the physical action at the simulated lane
first (load the paper, ...). Which step is being asked comes from the agent's live
record (`workflow.waiting_at`): the test stands in for a person who understood Maya;
helper B's Whisper-hearing persona (agent/storesim/phone.py) is the full version.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import numpy as np

from agent.app.dialer import AgentListener, play
from telephony.interface import SAMPLE_RATE, Call, IncomingCall, TransferOffer
from telephony.sip_endpoint import SipConfig, SipEndpoint
from tests.agent.session_peer import caller_speech

LOOK_AT_COUPON = "<look at the coupon>"
CLEAR, FADED = "Yeah it looks great, nice and dark.", "It's really faint, I can barely read it."
MAX_TURNS = 12


@dataclass
class Line:
    text: str
    lane_actions: tuple[str, ...] = ()
    hang_up: bool = False  # hang up right after saying it


@dataclass
class StorePhone:
    """`script`: step id -> lines said there in order (the last repeats), or a list said
    in order whatever the step. `waiting_at(call_id)` -> the step the agent waits on."""

    sim_http: httpx.AsyncClient
    script: dict[str, list[Line]] | list[Line]
    waiting_at: Callable[[str], str | None]
    chain: int = 1
    store: int = 1042
    lane: int = 4
    said: list[tuple[str | None, str]] = field(default_factory=list)  # (step, line)
    heard_voice: int = 0  # agent utterances heard
    refused: list[str] = field(default_factory=list)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    transferred_to: list[str] = field(default_factory=list)
    transfer_calls: list[Call] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.endpoint: SipEndpoint | None = None
        self._task: asyncio.Task[None] | None = None
        self._used: dict[str, int] = {}

    async def start(self, port: int, rtp_ports: tuple[int, int]) -> str:
        self.endpoint = SipEndpoint(
            SipConfig(bind=("127.0.0.1", port), rtp_ports=rtp_ports, user="store")
        )
        await self.endpoint.start(self._on_incoming, on_transfer=self._on_transfer)
        host, bound = self.endpoint.local_address
        return f"sip:store{self.store}@{host}:{bound}"

    async def stop(self) -> None:
        for call in self.transfer_calls:
            await call.hangup()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.endpoint is not None:
            await self.endpoint.stop()

    async def _on_transfer(self, offer: TransferOffer) -> None:
        """Maya hands the call on (escalation): the phone calls the target, like a phone
        following a blind transfer does."""
        self.transferred_to.append(offer.target)
        self.transfer_calls.append(await offer.accept(ring_timeout_s=10.0))

    async def _on_incoming(self, incoming: IncomingCall) -> None:
        call = await incoming.answer()
        self._task = asyncio.get_running_loop().create_task(self._converse(call))

    def _next_line(self, step: str | None) -> Line | None:
        if isinstance(self.script, list):
            index = len(self.said)
            return self.script[index] if index < len(self.script) else None
        lines = self.script.get(step or "")
        if not lines:
            return None
        used = self._used.get(step or "", 0)
        self._used[step or ""] = used + 1
        return lines[min(used, len(lines) - 1)]

    async def _converse(self, call: Call) -> None:
        listener = AgentListener(call)
        listener.start()
        since = time.monotonic()
        try:
            for _ in range(MAX_TURNS):
                step = await self._agent_waits(call, listener, since)
                if step is None:
                    break
                line = self._next_line(step)
                if line is None:
                    break
                text = await self._act(line)
                self.said.append((step, text))
                pcm = np.concatenate([caller_speech(text), np.zeros(SAMPLE_RATE, np.int16)])
                await play(call, pcm)
                since = time.monotonic()
                if line.hang_up:
                    await call.hangup()
                    break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(call.wait_ended(), 120)
        finally:
            await listener.stop()
            self.ended.set()

    async def _agent_waits(self, call: Call, listener: AgentListener, since: float) -> str | None:
        """Wait for the agent to speak and fall quiet, waiting on a step; None: call over."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and call.end_reason is None:
            heard = await listener.wait_voice(since, 60)
            if heard is None:
                return None
            last = await listener.wait_quiet(heard, 1.2, 60)
            self.heard_voice += 1
            step = self.waiting_at(call.info.call_id)
            if step is not None and time.monotonic() - last >= 1.2:
                return step
            since = last + 0.01  # a holding line: listen on
        return None

    async def _act(self, line: Line) -> str:
        base = f"/sim/stores/{self.chain}/{self.store}"
        for action in line.lane_actions:
            response = await self.sim_http.post(
                f"{base}/lanes/{self.lane}/actions", json={"action": action}
            )
            if response.status_code == 409:
                self.refused.append(action)
            else:
                response.raise_for_status()
        if line.text == LOOK_AT_COUPON:
            state = (await self.sim_http.get("/sim/state")).json()
            printer = next(p for p in state["stores"][0]["printers"] if p["lane"] == self.lane)
            prints = printer["prints"]
            return CLEAR if prints and prints[-1]["quality"] == "clear" else FADED
        return line.text
