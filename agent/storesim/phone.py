"""The store's phone: a simulated store employee who answers the agent's call.

    phone = StorePhone(sim_url, token, stt, PhoneOptions(persona="busy"))
    await phone.start()          # SIP UA at the store's sip_uri (default 127.0.0.1:5070)
    ...                          # the agent dials the store; phone.calls logs each call
    await phone.stop()

It hears the agent with Whisper (segments cut at the agent's pauses), understands the
request with poc.recognise, does the physical action on the simulator over its HTTP sim
API, and answers from the printer's real state with espeak-ng, in the persona's voice.
Every call is bounded in turns and seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
import numpy as np

from agent.storesim.personas import DEFAULT_PERSONA, Persona, get_persona
from agent.storesim.poc import PocBrain, PocReply, recognise
from serving.base import STTEngine
from telephony.interface import SAMPLE_RATE, Call, IncomingCall
from telephony.sip_endpoint import SipConfig, SipEndpoint

log = logging.getLogger(__name__)

FRAME_S = 0.02
_PREROLL_FRAMES = 10  # 200 ms kept before the first voiced frame (soft onsets)


class SimUnavailable(RuntimeError):
    """The store simulator's HTTP API could not be reached or refused the token."""


@dataclass(frozen=True)
class PhoneOptions:
    bind: tuple[str, int] = ("127.0.0.1", 5070)
    rtp_ports: tuple[int, int] = (31000, 31999)
    persona: str = DEFAULT_PERSONA
    max_turns: int = 40  # replies per call, then the POC has to go
    max_call_s: float = 900.0
    quiet_s: float = 0.9  # agent silence that ends a heard segment
    settle_s: float = 2.5  # more silence before answering a request said without a question
    hello_after_s: float = 6.0  # say hello if the agent is silent this long after answer
    bye_wait_s: float = 6.0  # after our goodbye, wait this long for the agent to hang up
    voiced_rms: float = 300.0  # int16 RMS of a 20 ms frame that counts as speech
    max_segment_s: float = 28.0
    pc_wait_s: float = 12.0


@dataclass
class PhoneTurn:
    heard: str
    said: str
    actions: list[str]
    refused: list[str]
    at_s: float  # seconds since answer


@dataclass
class PhoneCallLog:
    call_id: str
    persona: str
    chain: int
    store: int
    started_at: float  # time.time()
    turns: list[PhoneTurn] = field(default_factory=list)
    heard: list[str] = field(default_factory=list)  # every transcribed agent segment
    duration_s: float | None = None
    end_reason: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SimWorld:
    """The POC's view of one store, through the simulator's HTTP API."""

    def __init__(self, http: httpx.AsyncClient, chain: int, store: int) -> None:
        self._http = http
        self.chain = chain
        self.store = store

    async def _store(self) -> dict[str, Any]:
        state = await get_state(self._http)
        for store in state["stores"]:
            if (store["chain"], store["store"]) == (self.chain, self.store):
                return store
        raise SimUnavailable(f"store {self.chain}/{self.store} is not in the simulator")

    async def printer(self, lane: int) -> dict[str, Any]:
        for printer in (await self._store())["printers"]:
            if printer["lane"] == lane:
                return printer
        return {"lane": lane, "powered": False, "prints": []}  # no such lane: nothing there

    async def paper_rolls(self) -> int:
        return int((await self._store())["paper_rolls"])

    async def pc_answers(self) -> bool:
        return bool((await self._store())["pc_answers"])

    async def act(self, lane: int, action: str) -> str | None:
        path = f"/sim/stores/{self.chain}/{self.store}/lanes/{lane}/actions"
        response = await self._http.post(path, json={"action": action})
        if response.status_code in (404, 409):
            return str(response.json().get("detail", response.text))
        response.raise_for_status()
        return None

    async def restart_pc(self) -> None:
        path = f"/sim/stores/{self.chain}/{self.store}/actions"
        (await self._http.post(path, json={"action": "restart_pc"})).raise_for_status()


async def get_state(http: httpx.AsyncClient) -> dict[str, Any]:
    try:
        response = await http.get("/sim/state")
    except httpx.HTTPError as exc:
        raise SimUnavailable(f"store simulator at {http.base_url} unreachable: {exc}") from None
    if response.status_code == 401:
        raise SimUnavailable("the store simulator refused the token")
    response.raise_for_status()
    return response.json()


def _rms(frame: np.ndarray) -> float:
    return float(np.sqrt(np.mean(frame.astype(np.float64) ** 2))) if frame.size else 0.0


class _Ear:
    """Cuts the agent's audio into utterances at its pauses (energy: the agent's TTS
    arrives clean over G.711, so a level threshold is enough and fully repeatable)."""

    def __init__(self, call: Call, options: PhoneOptions) -> None:
        self.call = call
        self.options = options
        self.segments: asyncio.Queue[np.ndarray] = asyncio.Queue()
        self.last_voice = 0.0  # monotonic time of the latest voiced frame
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._listen())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def voice_since(self, moment: float) -> bool:
        return self.last_voice > moment

    async def _listen(self) -> None:
        quiet_frames = int(self.options.quiet_s / FRAME_S)
        max_frames = int(self.options.max_segment_s / FRAME_S)
        recent: list[np.ndarray] = []
        current: list[np.ndarray] = []
        voiced = silent = 0
        async for raw in self.call.audio_in():
            frame = np.frombuffer(raw, dtype="<i2")
            loud = _rms(frame) > self.options.voiced_rms
            if loud:
                self.last_voice = time.monotonic()
            if not current:
                recent = [*recent[-(_PREROLL_FRAMES - 1) :], frame]
                if loud:
                    current, voiced, silent = list(recent), 1, 0
                continue
            current.append(frame)
            voiced, silent = (voiced + 1, 0) if loud else (voiced, silent + 1)
            if silent >= quiet_frames or len(current) >= max_frames:
                if voiced * FRAME_S >= 0.15:  # clicks and blips are not speech
                    await self.segments.put(np.concatenate(current))
                current, recent = [], []


class StorePhone:
    """A SIP UA that answers as the store's point of contact, one call at a time."""

    def __init__(
        self,
        sim_url: str,
        token: str,
        stt: STTEngine,
        options: PhoneOptions | None = None,
    ) -> None:
        self.options = options or PhoneOptions()
        self.persona: Persona = get_persona(self.options.persona)
        self.stt = stt
        self.calls: list[PhoneCallLog] = []
        self.current: PhoneCallLog | None = None  # the call in progress, if any
        self._sim_url = sim_url
        self._token = token
        self._http: httpx.AsyncClient | None = None
        self._endpoint = SipEndpoint(
            SipConfig(bind=self.options.bind, rtp_ports=self.options.rtp_ports, user="store")
        )
        self._busy = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self.call_ended = asyncio.Condition()

    @property
    def uri(self) -> str:
        host, port = self._endpoint.local_address
        return f"sip:store@{host}:{port}"

    async def start(self) -> None:
        self._http = httpx.AsyncClient(
            base_url=self._sim_url,
            headers={"Authorization": f"Bearer {self._token}"},
            timeout=10.0,
            trust_env=False,
        )
        await get_state(self._http)  # fail now, with a clear reason, not mid-call
        await self._endpoint.start(self._on_incoming)

    async def stop(self) -> None:
        await self._endpoint.stop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()

    async def wait_call(self, count: int, timeout_s: float) -> bool:
        """Wait until `count` calls have ended (bounded); True if they have."""
        async with self.call_ended:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self.call_ended.wait_for(lambda: len(self.calls) >= count and not self._busy),
                    timeout_s,
                )
        return len(self.calls) >= count and not self._busy

    # ------------------------------------------------------------ answering

    async def _on_incoming(self, incoming: IncomingCall) -> None:
        if self._busy:
            await incoming.reject(486, "Busy Here")  # one POC, one phone line
            return
        assert self._http is not None
        try:
            state = await get_state(self._http)
        except (SimUnavailable, httpx.HTTPError) as exc:
            log.error("store phone: %s", exc)
            await incoming.reject(503, "Service Unavailable")
            return
        store = _store_for(state, incoming.info.callee)
        self._busy = True
        try:
            call = await incoming.answer()
        except Exception:
            self._busy = False
            raise
        task = asyncio.get_running_loop().create_task(self._run_call(call, state, store))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_call(self, call: Call, state: dict[str, Any], store: dict[str, Any]) -> None:
        record = PhoneCallLog(
            call_id=call.info.call_id,
            persona=self.persona.name,
            chain=store["chain"],
            store=store["store"],
            started_at=time.time(),
        )
        answered = time.monotonic()
        self.current = record
        try:
            await self._converse(call, state, store, record, answered)
        except Exception as exc:  # the log must still be kept; the call just ends
            log.exception("store phone: call %s failed", record.call_id)
            record.error = f"{type(exc).__name__}: {exc}"
        finally:
            with contextlib.suppress(Exception):
                await call.hangup()
            record.duration_s = round(time.monotonic() - answered, 2)
            reason = call.end_reason
            record.end_reason = reason.value if reason is not None else None
            async with self.call_ended:
                self.calls.append(record)
                self.current = None
                self._busy = False
                self.call_ended.notify_all()

    async def _converse(
        self,
        call: Call,
        state: dict[str, Any],
        store: dict[str, Any],
        record: PhoneCallLog,
        answered: float,
    ) -> None:
        from serving.tts.espeak_engine import EspeakTTS

        assert self._http is not None
        opts = self.options
        persona = self.persona
        voice = EspeakTTS(persona.voice, words_per_minute=persona.words_per_minute)
        brain = PocBrain(
            persona=persona,
            world=SimWorld(self._http, store["chain"], store["store"]),
            poc_name=store.get("poc_name") or "the manager",
            store_name=store.get("name") or f"store {store['store']}",
            lane=_ticket_lane(state, store),
            pc_wait_s=opts.pc_wait_s,
        )
        await brain.start()
        ear = _Ear(call, opts)
        ear.start()
        pending = ""
        said_hello = False
        deadline = answered + opts.max_call_s
        try:
            while call.end_reason is None and len(record.turns) < opts.max_turns:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    segment = await asyncio.wait_for(
                        ear.segments.get(), min(left, opts.settle_s if pending else 1.0)
                    )
                except TimeoutError:
                    if call.end_reason is not None:
                        break
                    if pending and time.monotonic() - ear.last_voice >= opts.settle_s:
                        reply = await brain.reply(pending)
                        if reply is None and not record.turns:
                            reply = brain.greeting()
                        elif reply is None and recognise(pending).question:
                            reply = brain.unclear()
                        heard, pending = pending, ""
                        if reply is not None and await self._answer(
                            call, voice, record, heard, reply, answered
                        ):
                            return
                    elif not ear.last_voice and not said_hello:
                        if time.monotonic() - answered >= opts.hello_after_s:
                            said_hello = True
                            await self._say(call, voice, f"Hello, {brain.store_name}.")
                    continue
                segment_end = time.monotonic()
                text = (await self.stt.transcribe(segment, SAMPLE_RATE)).text.strip()
                if not text:
                    continue
                record.heard.append(text)
                pending = f"{pending} {text}".strip()
                heard = recognise(pending)
                if not (heard.answerable and heard.complete):
                    continue  # a statement, or a request still being said: keep listening
                if not ear.segments.empty() or ear.voice_since(segment_end + 0.3):
                    continue  # the agent went on talking; answer once it has finished
                reply = await brain.reply(pending)
                heard_text, pending = pending, ""
                if reply is not None and await self._answer(
                    call, voice, record, heard_text, reply, answered
                ):
                    return
            if call.end_reason is None:  # out of turns or time: a real POC would leave too
                await self._say(call, voice, "Sorry, I have to go now. Bye.")
        finally:
            await ear.stop()

    async def _answer(
        self,
        call: Call,
        voice: Any,
        record: PhoneCallLog,
        heard: str,
        reply: PocReply,
        answered: float,
    ) -> bool:
        """Speak the reply and log the turn; True when the call is over."""
        record.turns.append(
            PhoneTurn(
                heard=heard,
                said=reply.text,
                actions=list(reply.actions),
                refused=list(reply.refused),
                at_s=round(time.monotonic() - answered, 2),
            )
        )
        log.info("store phone heard %r, said %r, did %s", heard, reply.text, reply.actions)
        await self._say(call, voice, reply.text)
        if reply.end_call:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(call.wait_ended(), self.options.bye_wait_s)
            return True
        return False

    async def _say(self, call: Call, voice: Any, text: str) -> None:
        from serving.audio import resample

        if call.end_reason is not None:
            return
        parts = []
        async for chunk in voice.synthesize(text):
            parts.append(resample(chunk.pcm, chunk.sample_rate, SAMPLE_RATE))
        if not parts:
            return
        pcm = np.concatenate([*parts, np.zeros(SAMPLE_RATE // 5)]).astype("<i2")
        await call.write(pcm.tobytes())
        await call.drain()


def sip_bind_of(uri: str) -> tuple[str, int]:
    """Where to listen for a store's sip_uri (sip:store1042@127.0.0.1:5070)."""
    from telephony.sip_endpoint import uri_destination

    return uri_destination(uri)


def _user_of(uri: str) -> str:
    bare = uri.strip().strip("<>").split(":", 1)[-1]
    return bare.split("@", 1)[0] if "@" in bare else ""


def _store_for(state: dict[str, Any], callee: str) -> dict[str, Any]:
    """The store whose sip_uri user the agent dialled (store1042); else the first one."""
    user = _user_of(callee)
    for store in state["stores"]:
        if user and _user_of(store.get("sip_uri") or "") == user:
            return store
    return state["stores"][0]


def _ticket_lane(state: dict[str, Any], store: dict[str, Any]) -> int:
    """The lane the call is most likely about: an open ticket's, else a faulty printer's."""
    for ticket in state.get("tickets") or []:
        if (ticket["chain"], ticket["store"]) == (store["chain"], store["store"]) and ticket[
            "status"
        ] in ("new", "in_progress"):
            return int(ticket["lane"])
    for printer in store["printers"]:
        if printer["status"] != "Idle":
            return int(printer["lane"])
    return int(store["printers"][0]["lane"]) if store["printers"] else 1
