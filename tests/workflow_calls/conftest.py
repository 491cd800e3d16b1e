"""An outbound-call stack on loopback: the store simulator (fast timing), the agent
server with real CPU engines, the TicketCaller, and the store's phone (a SIP UA).

Ports (helper A's range 18000-18499): agent SIP 18000-18099, store phone SIP
18100-18199, agent RTP 18200-18339, phone RTP 18340-18449, simulator 18450-18499.
"""

from __future__ import annotations

import random
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

import models
from agent.app.outbound import TicketCaller
from agent.app.server import AgentServer
from agent.app.settings import AgentSettings, SipSettings, StoreSettings
from agent.records import CallRecordStore
from agent.session import Engines, SessionOptions
from agent.storesim.runner import StoreSim
from serving.llm.llama_cpp_engine import LlamaCppLLM
from serving.stt.faster_whisper_engine import FasterWhisperSTT
from serving.tts.piper_engine import PiperTTS
from tests.storesim.simulator import FAST_TIMING, TOKEN
from tests.workflow_calls.store_phone import Line, StorePhone

AGENT_SIP, PHONE_SIP = (18000, 18099), (18100, 18199)
AGENT_RTP, PHONE_RTP = (18200, 18339), (18340, 18449)
SIM_PORTS = (18450, 18499)
_handed_out: set[int] = set()


def free_port(low: int, high: int) -> int:
    for _ in range(300):
        port = random.randint(low, high)
        if port in _handed_out:
            continue
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            with socket.socket(socket.AF_INET, kind) as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    break
        else:
            _handed_out.add(port)
            return port
    raise RuntimeError(f"no free port in {low}-{high}")


@pytest.fixture(scope="module")
def engines() -> Iterator[Engines]:
    llm = LlamaCppLLM(models.resolve("qwen2.5-coder-0.5b-instruct"), n_ctx=2048)
    yield Engines(
        FasterWhisperSTT(models.resolve("whisper-tiny.en")),
        llm,
        PiperTTS(models.resolve("piper-joe-medium")),
    )
    llm.close()


@dataclass
class Stack:
    sim: StoreSim
    sim_http: httpx.AsyncClient
    server: AgentServer
    caller: TicketCaller
    store: CallRecordStore
    phones: list[StorePhone] = field(default_factory=list)

    def waiting_at(self, call_id: str) -> str | None:
        """The step the agent waits on, once it is quiet (None while it works or talks)."""
        session = self.server.sessions.get(call_id)
        if session is None or session.busy:
            return None
        return (session.record.workflow or {}).get("waiting_at")

    def ticket(self, ticket_id: str = "T1") -> dict[str, Any]:
        return self.sim.state.ticket(ticket_id)

    def commands(self) -> list[str]:
        return [c["command"].removeprefix("cd /catalina && ") for c in self.sim.state.command_log]

    async def phone(self, script: Any) -> StorePhone:
        """The store's phone, answering at the store's sip_uri in the simulator."""
        phone = StorePhone(self.sim_http, script, self.waiting_at)
        uri = await phone.start(free_port(*PHONE_SIP), PHONE_RTP)
        self.sim.state.store(1, 1042).sip_uri = uri
        self.phones.append(phone)
        return phone


def session_options() -> SessionOptions:
    # Long silence limits: on a loaded 2-core machine a turn can take a while.
    return SessionOptions(silence_prompt_s=25.0, silence_hangup_s=20.0, max_call_s=400.0)


@pytest.fixture
async def make_stack(engines, tmp_path: Path) -> AsyncIterator[Any]:
    built: list[Stack] = []

    async def make(scenario: str = "demo", **store_settings: Any) -> Stack:
        sim = StoreSim(
            scenario=scenario,
            state_dir=tmp_path / "storesim",
            ssh_port=free_port(*SIM_PORTS),
            http_port=free_port(*SIM_PORTS),
            token=TOKEN,
            timing=FAST_TIMING,
        )
        await sim.start()
        store = CallRecordStore(f"sqlite:///{tmp_path}/calls.db", spool_dir=tmp_path / "spool")
        settings = AgentSettings(
            sip=SipSettings(bind=("127.0.0.1", free_port(*AGENT_SIP)), rtp_ports=AGENT_RTP),
            session=session_options(),
        )
        server = AgentServer(engines, settings, store=store)
        await server.start()
        stores = StoreSettings(
            **{
                "api_url": sim.http_url,
                "token": TOKEN,
                "known_hosts": str(sim.known_hosts_path),
                "ssh_connect_timeout_s": 2.0,
                "ssh_command_timeout_s": 4.0,
                "ring_timeout_s": 10.0,
                **store_settings,
            }
        )
        http = httpx.AsyncClient(
            base_url=sim.http_url,
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=10,
            trust_env=False,
        )
        stack = Stack(sim, http, server, TicketCaller(stores, server), store)
        built.append(stack)
        return stack

    yield make
    for stack in built:
        await stack.server.stop()
        await stack.caller.close()
        for phone in stack.phones:
            await phone.stop()
        await stack.sim_http.aclose()
        await stack.sim.stop()


__all__ = ["Line", "Stack"]
