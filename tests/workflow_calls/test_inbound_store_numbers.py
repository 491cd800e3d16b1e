"""A store calling sip:helpdesk@ says its store and lane, and Whisper tiny.en writes the
store number however it heard it: the inbound director still finds store 1042 (a near
reading is confirmed with the caller first), over text and then over a real SIP call.

Ports (helper B's range 20300-20499): agent SIP 20300-20339, caller SIP 20340-20379,
agent RTP 20380-20439, caller RTP 20440-20479, simulator 20480-20499.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.app.dialer import AgentListener, play
from agent.app.outbound import TicketCaller
from agent.app.record_sink import record_id
from agent.app.server import AgentServer
from agent.app.settings import AgentSettings, SipSettings, StoreSettings
from agent.records import CallRecordStore
from agent.records.schema import CallRecord as StoredCall
from agent.storesim.runner import StoreSim
from agent.tools.api_clients import StoreMasterClient
from agent.tools.store_ssh import StoreSSH
from agent.tools.store_tools import CallContext, StoreTools
from agent.workflows import WorkflowRun, load_library
from agent.workflows.call_director import WorkflowDirector
from agent.workflows.inbound import InboundPrinterDirector, lane_said, yes_or_no
from agent.workflows.spoken_numbers import closest_number, number_readings, spoken_number
from telephony.interface import SAMPLE_RATE, IncomingCall
from telephony.sip_endpoint import SipConfig, SipEndpoint
from tests.agent.session_peer import caller_speech
from tests.storesim.simulator import FAST_TIMING, TOKEN
from tests.workflow_calls.conftest import free_port, session_options
from tests.workflows.harness import ScriptedClassifier

AGENT_SIP, CALLER_SIP = (20300, 20339), (20340, 20379)
AGENT_RTP, CALLER_RTP = (20380, 20439), (20440, 20479)
SIM_PORTS = (20480, 20499)
CONFIRM = "Store 1042, is that right?"
ASK_LANE = "Thanks. And which checkout lane is the printer on?"
KBA3813_OPENING = "lane 4 is showing Out of Paper"


def make_sim(tmp_path: Path, scenario: str = "demo") -> StoreSim:
    return StoreSim(
        scenario=scenario,
        state_dir=tmp_path / "storesim",
        ssh_port=free_port(*SIM_PORTS),
        http_port=free_port(*SIM_PORTS),
        token=TOKEN,
        timing=FAST_TIMING,
    )


# ---------------------------------------------------------------- the numbers as heard


def test_store_numbers_as_whisper_hears_them_over_a_phone_line():
    # What whisper-tiny.en wrote for espeak-ng callers through G.711 (measured).
    assert spoken_number("Door 10 42.") == 1042  # "Store ten forty-two."
    assert spoken_number("1. 0. 4. 2") == 1042  # "One zero four two."
    assert spoken_number("0.104 to lane 4") == 1042  # "Store one oh four two, lane four."
    assert spoken_number("Store 1,042") == 1042
    assert spoken_number("one zero for two") == 1042
    # Heard wrong, but near the one store of the chain: a candidate to confirm.
    for heard in ("It's 4.10 42.", "4.10 for the two.", "We are 4 and 42, lane 4."):
        assert closest_number(number_readings(heard), [1042, 2001, 3150]) == 1042, heard
    # Too little heard, nothing near, or two stores equally near: no guess.
    assert closest_number(number_readings("41."), [1042]) is None
    assert closest_number(number_readings("This in 4.5, 4."), [1042]) is None
    assert closest_number([1043], [1042, 1044]) is None
    assert lane_said("We are 4 and 42, lane 4.") == 4 and lane_said("lane for") == 4
    assert spoken_number("playing for", loose=True) == 4  # "Lane four." asked for a lane
    assert yes_or_no("Yes, that's right.") is True and yes_or_no("Yeah.") is True
    assert yes_or_no("No, that's not it.") is False and yes_or_no("Hmm?") is None


@pytest.fixture
async def inbound(tmp_path) -> AsyncIterator[tuple[Callable[[], InboundPrinterDirector], Any]]:
    sim = make_sim(tmp_path)
    async with (
        sim,
        StoreSSH(sim.known_hosts_path, connect_timeout_s=2.0, command_timeout_s=4.0) as ssh,
        StoreMasterClient(sim.http_url, TOKEN) as storemaster,
    ):
        library = load_library()

        def tools_for(chain: int, store: int):
            return StoreTools(CallContext(chain, store), ssh, storemaster).registry()

        def start_run(name: str, context: dict, tools) -> WorkflowDirector:
            run = WorkflowRun(library[name], tools, ScriptedClassifier(), context, library=library)
            return WorkflowDirector(run, tools=tools)

        yield (lambda: InboundPrinterDirector(storemaster, tools_for, start_run)), sim


async def converse(director: InboundPrinterDirector, *lines: str) -> list[str]:
    await director.respond(None)
    return [" ".join((await director.respond(line)).texts) for line in lines]


async def test_a_misheard_store_number_is_confirmed_before_it_is_used(inbound):
    make, sim = inbound
    director = make()
    said = await converse(director, "Hi, my coupon printer isn't working.", "It's 4.10 42.")
    assert said[-1] == CONFIRM and director.asking == "store_confirmation"
    assert sim.state.command_log == []  # nothing runs on a store PC before it is confirmed
    said = [" ".join((await director.respond(line)).texts) for line in ("Yeah.", "lane 4")]
    assert said[0] == ASK_LANE
    assert KBA3813_OPENING in said[1]
    assert director.summary()["caller_store"] == {"chain": 1, "store": 1042, "lane": 4}

    # Said no to: asked again, and a plain reading then needs no confirmation.
    director = make()
    said = await converse(director, "4.10 for the two.", "No, that's not it.", "Door 10 42.")
    assert said == [CONFIRM, "Sorry about that. Which store number is it?", ASK_LANE]

    # Store and lane in one breath: the lane is not asked for again.
    director = make()
    said = await converse(director, "We are 4 and 42, lane 4.", "Yes, that's right.")
    assert said[0] == CONFIRM and KBA3813_OPENING in said[1]
    assert director.summary()["name"] == "KBA3813"


async def test_a_number_near_no_store_is_asked_again_then_a_callback(inbound):
    make, sim = inbound
    director = make()
    said = await converse(director, "It's store 7.", "This in 4.5, 4.", "41.", "Um.")
    assert said[:2] == [
        "I can help with that. Which store number are you calling from?",
        "Sorry, I didn't catch a store number I can find. Could you say it again?",
    ]
    assert "call you back" in said[-1] and director.summary()["outcome"] == "callback"
    assert sim.state.command_log == []


# ---------------------------------------------------------------- over a real call


async def _refuse(incoming: IncomingCall) -> None:
    await incoming.reject(486, "Busy Here")


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_a_store_calling_the_helpdesk_gets_its_printer_workflow(engines, tmp_path):
    """An espeak-ng caller on a G.711 line says its store the way people do ("store ten
    forty two"); Maya finds store 1042 lane 4, checks the printer and starts KBA3813."""
    sim = make_sim(tmp_path)
    await sim.start()
    store = CallRecordStore(f"sqlite:///{tmp_path}/calls.db", spool_dir=tmp_path / "spool")
    server = AgentServer(
        engines,
        AgentSettings(
            sip=SipSettings(bind=("127.0.0.1", free_port(*AGENT_SIP)), rtp_ports=AGENT_RTP),
            session=session_options(),
        ),
        store=store,
    )
    caller = TicketCaller(
        StoreSettings(
            api_url=sim.http_url,
            token=TOKEN,
            known_hosts=str(sim.known_hosts_path),
            ssh_connect_timeout_s=2.0,
            ssh_command_timeout_s=4.0,
        ),
        server,
    )
    server.inbound_directors = lambda: caller.inbound_director(engines.llm)
    phone = SipEndpoint(
        SipConfig(bind=("127.0.0.1", free_port(*CALLER_SIP)), rtp_ports=CALLER_RTP, user="store")
    )
    lines = {
        # Whisper tiny hears these as e.g. "It's 4.10 42." / "1. 0. 4. 2"
        "store": ["It's store ten forty two.", "One zero four two.", "Ten forty two."],
        "store_confirmation": ["Yes, that's right."],
        "lane": ["Lane four."],
    }
    said: list[tuple[str, str]] = []
    try:
        await server.start()
        await phone.start(_refuse)
        host, port = server.sip_address
        call = await phone.place_call(f"sip:helpdesk@{host}:{port}", ring_timeout_s=10)
        listener = AgentListener(call)
        listener.start()
        try:
            since = time.monotonic()
            asking: str | None = "problem"
            for _ in range(8):
                heard = await listener.wait_voice(since, 90)
                assert heard is not None, ("the agent fell silent", said)
                await listener.wait_quiet(heard, 1.2, 90)
                asking = await _asked(server, call.info.call_id, asking)
                if asking is None:
                    break  # the workflow has the call: its first step was said
                options = lines.get(asking, ["Hi, the coupon printer on my lane isn't working."])
                used = sum(1 for a, _ in said if a == asking)
                text = options[min(used, len(options) - 1)]
                said.append((asking, text))
                pcm = np.concatenate([caller_speech(text), np.zeros(SAMPLE_RATE, np.int16)])
                _, since = await play(call, pcm)
        finally:
            await listener.stop()
            await call.hangup()
        saved = await _saved(store, call.info.call_id)
    finally:
        await phone.stop()
        await server.stop()
        await caller.close()
        await sim.stop()
    heard = [t.text for t in saved.turns if t.speaker == "caller"]
    workflow = saved.metadata.get("workflow") or {}
    agent_said = " ".join(t.text for t in saved.turns if t.speaker == "agent")
    assert workflow.get("caller_store") == {"chain": 1, "store": 1042, "lane": 4}, (said, heard)
    assert workflow["name"] == "KBA3813", workflow
    assert KBA3813_OPENING in agent_said, agent_said
    # The store PC was asked about lane 4 only once the store and lane were settled.
    assert [c["command"] for c in sim.state.command_log][:1] == ["cd /catalina && printer_status 4"]
    assert saved.direction == "inbound"
    print("caller said:", said, "\nagent heard:", heard)


async def _asked(server: AgentServer, call_id: str, previous: str | None) -> str | None:
    """What the agent waits for once it is quiet: the director's question ("problem"
    before it asked anything), None once the workflow runs."""
    for _ in range(100):
        session = server.sessions.get(call_id)
        if session is None:
            return None
        if not session.busy:
            workflow = session.record.workflow
            if workflow is None:
                return previous
            if workflow.get("name"):
                return None
            return workflow.get("asking") or previous
        await asyncio.sleep(0.1)
    return previous


async def _saved(store: CallRecordStore, call_id: str) -> StoredCall:
    for _ in range(100):
        saved = await store.get_call(record_id(call_id))
        if saved is not None and saved.ended_at is not None:
            return saved
        await asyncio.sleep(0.1)
    raise AssertionError(f"call {call_id} was not saved")
