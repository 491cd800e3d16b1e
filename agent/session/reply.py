"""One spoken reply: LLM (streaming, tools) -> speakable pieces -> TTS -> the call.

The LLM and TTS run as two tasks joined by a queue, so the first clause is being
synthesized (and played) while the LLM is still writing the rest. Cancelling the
reply cancels both; closing the LLM stream stops generation in the engine.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from agent.session.barge_in import SpokenSegment
from agent.session.clauses import SpeechSplitter, speakable
from agent.session.config import SessionOptions
from agent.session.playout import Playout
from agent.session.record import EntryKind, ToolCallRecord
from agent.session.trace import TurnTrace
from serving.audio import resample
from serving.base import LLMEngine, Message, Tool, ToolCall, TTSEngine
from serving.llm.tool_calls import tool_request_message, tool_result_message
from telephony.interface import SAMPLE_RATE

ToolExecutor = Callable[[ToolCall], Awaitable[str]]
"""Runs one validated tool call and returns its result (JSON text) for the LLM."""

T = TypeVar("T")

# After the reply's first write, look for its first packet on the wire: a paced
# transport sends it at the next 20 ms tick, so poll just past that, a few times.
PACKET_OUT_POLL_S = 0.025
PACKET_OUT_POLLS = 4


class StageFailed(Exception):
    """A model stage (stt, llm, tts) raised or timed out."""

    def __init__(self, stage: str, detail: str) -> None:
        super().__init__(f"{stage}: {detail}")
        self.stage = stage
        self.detail = detail


@dataclass
class AgentSpeech:
    """One stretch of agent speech that barge-in can cut: a reply or a fixed line."""

    kind: EntryKind
    trace: TurnTrace | None = None
    generated: list[str] = field(default_factory=list)  # every piece meant to be said
    segments: list[SpokenSegment] = field(default_factory=list)  # pieces with audio out
    exchange: list[Message] = field(default_factory=list)  # caller/tool messages for history
    tool_calls: list[ToolCallRecord] = field(default_factory=list)
    finished: bool = False  # every generated piece was written to the call
    resume_from: int = 0  # after barge-in: first piece not heard in full
    first_write_at: float | None = None
    # Set once the first piece has been voiced (or turned out silent): until then the LLM
    # reader pauses, which pauses an in-process model, so TTS has the cores to itself.
    first_piece_voiced: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def started_audio(self) -> bool:
        return self.first_write_at is not None


async def next_within(iterator: AsyncIterator[T], timeout_s: float, stage: str) -> T:
    """The next item, raising StopAsyncIteration at the end and StageFailed on error
    or when it takes longer than `timeout_s`."""
    try:
        return await asyncio.wait_for(anext(iterator), timeout_s)
    except StopAsyncIteration:
        raise
    except TimeoutError:
        raise StageFailed(stage, f"no output within {timeout_s:g} s") from None
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # any engine failure (EngineError, a dead server...)
        raise StageFailed(stage, f"{type(exc).__name__}: {exc}") from exc


async def _close(iterator: AsyncIterator[Any]) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:  # the stream already failed; its error was reported
            pass


class ReplyPipeline:
    def __init__(
        self,
        llm: LLMEngine,
        tts: TTSEngine,
        playout: Playout,
        options: SessionOptions,
        *,
        tools: Sequence[Tool] = (),
        tool_executor: ToolExecutor | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.llm = llm
        self.tts = tts
        self.playout = playout
        self.options = options
        self.tools = list(tools)
        self.tool_executor = tool_executor
        self._clock = clock  # seconds since the call started, for records
        self._watchers: set[asyncio.Task[None]] = set()  # first-packet-out lookups

    async def reply(self, messages: list[Message], speech: AgentSpeech) -> None:
        """Generate and speak an answer to `messages`; raises StageFailed."""
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        await self._run(self._generate(messages, speech, queue), speech, queue)

    async def say(self, texts: Sequence[str], speech: AgentSpeech) -> None:
        """Speak fixed text pieces through TTS (e.g. the rest of an interrupted reply)."""
        queue: asyncio.Queue[str | None] = asyncio.Queue()

        async def feed() -> None:
            for text in texts:
                await self._emit(text, speech, queue)
            await queue.put(None)

        await self._run(feed(), speech, queue)

    async def _run(
        self, producer: Awaitable[None], speech: AgentSpeech, queue: asyncio.Queue[str | None]
    ) -> None:
        produce = asyncio.ensure_future(producer)
        voice = asyncio.ensure_future(self._voice(speech, queue))
        try:
            done, _ = await asyncio.wait({produce, voice}, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()  # raise the first failure
            await produce
            await voice
            speech.finished = True
        finally:
            for task in (produce, voice):
                task.cancel()
            await asyncio.gather(produce, voice, return_exceptions=True)

    # ------------------------------------------------------------ LLM side

    async def _generate(
        self, messages: list[Message], speech: AgentSpeech, queue: asyncio.Queue[str | None]
    ) -> None:
        opts = self.options
        conversation = list(messages)
        answered: dict[tuple[str, str], str] = {}  # this turn's calls -> their results
        looping = False
        for round_index in range(opts.max_tool_rounds + 1):
            last_round = round_index == opts.max_tool_rounds
            tools = self.tools if self.tools and not (last_round or looping) else None
            text, calls = await self._stream_round(conversation, tools, speech, queue)
            if not calls:
                break
            asked = tool_request_message(text, calls)
            conversation.append(asked)
            speech.exchange.append(asked)
            for call in calls:
                key = self._call_key(call)
                if key in answered:
                    # The 0.5B model calls a tool again once it has the answer, with the
                    # result pasted in as arguments: never run it twice; words next.
                    result, looping = answered[key], True
                else:
                    result = answered[key] = await self._run_tool(call, speech)
                answer = tool_result_message(call, result)
                conversation.append(answer)
                speech.exchange.append(answer)
        await queue.put(None)

    async def _stream_round(
        self,
        conversation: list[Message],
        tools: list[Tool] | None,
        speech: AgentSpeech,
        queue: asyncio.Queue[str | None],
    ) -> tuple[str, list[ToolCall]]:
        opts = self.options
        splitter = SpeechSplitter()
        text: list[str] = []
        calls: list[ToolCall] = []
        trace = speech.trace
        try:
            stream = self.llm.chat(
                conversation, tools=tools, max_tokens=opts.max_tokens, temperature=opts.temperature
            )
        except Exception as exc:
            raise StageFailed("llm", f"{type(exc).__name__}: {exc}") from exc
        iterator = aiter(stream)
        started = False  # per request: a round after a tool result evaluates a new prompt
        try:
            while True:
                timeout = opts.llm_stall_timeout_s if started else opts.llm_first_token_timeout_s
                try:
                    delta = await next_within(iterator, timeout, "llm")
                except StopAsyncIteration:
                    break
                started = True
                if trace is not None:
                    trace.mark("llm_first_token")
                if delta.text:
                    text.append(delta.text)
                    for piece in splitter.push(delta.text):
                        await self._emit(piece, speech, queue)
                if delta.tool_call is not None:
                    calls.append(delta.tool_call)
        finally:
            await _close(iterator)
        for piece in splitter.flush():
            await self._emit(piece, speech, queue)
        return "".join(text), calls

    async def _emit(
        self, piece: str, speech: AgentSpeech, queue: asyncio.Queue[str | None]
    ) -> None:
        piece = speakable(piece)
        if not any(c.isalnum() for c in piece):
            return  # nothing a TTS can say ("...", a stray emoji)
        speech.generated.append(piece)
        if speech.trace is not None:
            speech.trace.mark("first_sentence")
        await queue.put(piece)
        if len(speech.generated) == 1 and self.options.pace_llm_to_first_audio:
            # What the caller waits for is this piece's audio; the rest of the reply can
            # be written while it plays (see LlamaCppLLM's reader pacing).
            await speech.first_piece_voiced.wait()

    def _call_key(self, call: ToolCall) -> tuple[str, str]:
        """The call's name and the arguments its tool declares, canonical JSON."""
        try:
            arguments = json.loads(call.arguments or "{}")
        except ValueError:
            return call.name, call.arguments
        declared = next(
            (
                tool.get("function", {}).get("parameters", {}).get("properties")
                for tool in self.tools
                if tool.get("function", {}).get("name") == call.name
            ),
            None,
        )
        if isinstance(arguments, dict) and isinstance(declared, dict):
            arguments = {k: v for k, v in arguments.items() if k in declared}
        return call.name, json.dumps(arguments, sort_keys=True)

    async def _run_tool(self, call: ToolCall, speech: AgentSpeech) -> str:
        start = self._clock()
        error: str | None = None
        if self.tool_executor is None:
            error = "no tool executor is configured"
        else:
            try:
                result = await asyncio.wait_for(
                    self.tool_executor(call), self.options.tool_timeout_s
                )
            except TimeoutError:
                error = f"timed out after {self.options.tool_timeout_s:g} s"
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a tool failing is news for the LLM, not a crash
                error = f"{type(exc).__name__}: {exc}"
        if error is not None:
            result = json.dumps({"error": f"tool {call.name} failed: {error}"})
        speech.tool_calls.append(
            ToolCallRecord(
                turn=speech.trace.index if speech.trace else -1,
                call_id=call.id,
                name=call.name,
                arguments=call.arguments,
                result=result,
                error=error,
                start_s=start,
                end_s=self._clock(),
            )
        )
        return result

    # ------------------------------------------------------------ TTS side

    async def _voice(self, speech: AgentSpeech, queue: asyncio.Queue[str | None]) -> None:
        while (piece := await queue.get()) is not None:
            segment = SpokenSegment(piece, self.playout.position, self.playout.position)
            speech.segments.append(segment)
            iterator = aiter(self.tts.synthesize(piece, self.options.voice))
            try:
                while True:
                    try:
                        chunk = await next_within(iterator, self.options.tts_timeout_s, "tts")
                    except StopAsyncIteration:
                        break
                    if speech.trace is not None:
                        speech.trace.mark("tts_first_audio")
                    pcm = resample(
                        np.asarray(chunk.pcm, dtype=np.int16), chunk.sample_rate, SAMPLE_RATE
                    )
                    if segment.end == segment.start:
                        # Other audio (a holding line) may have gone out since the
                        # piece was queued: it starts where its first sample lands.
                        segment.start = segment.end = self.playout.position
                    written_at = await self.playout.write(pcm, segment)
                    speech.first_piece_voiced.set()
                    if speech.first_write_at is None:
                        speech.first_write_at = written_at
                        if speech.trace is not None:
                            speech.trace.mark("first_audio_written", written_at)
                            self._watch_packet_out(speech.trace, written_at)
            finally:
                await _close(iterator)
            segment.complete = True
            speech.first_piece_voiced.set()

    def _watch_packet_out(self, trace: TurnTrace, written_at: float) -> None:
        # A task of its own: the reply keeps streaming while we wait for the tick.
        task = asyncio.get_running_loop().create_task(self._mark_packet_out(trace, written_at))
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    async def _mark_packet_out(self, trace: TurnTrace, written_at: float) -> None:
        """Mark `first_packet_out` from the transport, if the reply started a burst."""
        for _ in range(PACKET_OUT_POLLS):
            await asyncio.sleep(PACKET_OUT_POLL_S)
            sent_at = getattr(self.playout.call, "audio_out_started_at", None)
            # An older value is another burst (greeting, a holding line still playing)
            if sent_at is not None and sent_at >= written_at:
                trace.mark("first_packet_out", sent_at)
                return
