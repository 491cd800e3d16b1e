"""One phone call, end to end: listen, take turns, answer, get interrupted, end well.

    lines = await prepare_session(engines, options)      # before answering
    call = await incoming.answer()
    record = await CallSession(call, engines, options, lines=lines).run()

or simply `await answer_and_run(incoming, engines, options)`.

Tasks per call (all named "call-<id>:...", all cancelled when the call ends):
- listen:  caller audio -> TurnDetector; SpeechStarted cuts the agent off (barge-in),
           TurnEnded starts a turn task;
- turn:    STT -> LLM -> TTS -> call (agent/session/reply.py), with a holding line
           when no reply audio has gone out `holding_after_s` after the end of turn;
- silence: prompts a silent caller, then says goodbye.
The supervisor (run) ends the call on far-end hang-up, on request (silence, repeated
model failure) or at max_call_s, and always hands the CallRecord to the sink.

Barge-in policy: see agent/session/barge_in.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from agent.audio import (
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    TurnDetector,
    TurnEnded,
    TurnEvent,
    VoiceStarted,
    VoiceStopped,
)
from agent.session.barge_in import PAUSE_MAX_S, SpokenSegment, heard_text, is_backchannel, words
from agent.session.config import SessionOptions
from agent.session.director import CallDirector
from agent.session.fallback import FallbackLines, Line
from agent.session.history import ConversationHistory
from agent.session.playout import Playout
from agent.session.record import (
    CallRecord,
    EntryKind,
    Outcome,
    RecordSink,
    SessionError,
    SessionEvent,
    TranscriptEntry,
)
from agent.session.reply import AgentSpeech, ReplyPipeline, StageFailed, ToolExecutor
from agent.session.speculative import SpeculativeSTT
from agent.session.trace import TurnTrace
from serving.base import LLMEngine, Message, STTEngine, Tool, TTSEngine
from telephony.interface import SAMPLE_RATE, Call, IncomingCall

log = logging.getLogger(__name__)

EscalateHook = Callable[[CallRecord, str], Awaitable[bool]]
"""Called when models keep failing, with the reason; True: it took the call over."""


class Engines(NamedTuple):
    stt: STTEngine
    llm: LLMEngine
    tts: TTSEngine


@dataclass
class PreparedSession:
    """What is made before the call is answered: the pre-synthesized lines and the
    turn detector; the LLM's stable prefix is warmed as a side effect."""

    lines: FallbackLines
    detector: TurnDetector


async def prepare_session(
    engines: Engines | Sequence[Any],
    options: SessionOptions | None = None,
    tools: Sequence[Tool] = (),
    *,
    detector: TurnDetector | None = None,
) -> PreparedSession:
    """Warm the LLM's system prompt, pre-synthesize the fixed lines, load the turn models."""
    _stt, llm, tts = engines
    options = options or SessionOptions()
    warm = getattr(llm, "warm", None)
    if callable(warm):
        # The greeting too: it opens the history, so the first turn's prompt then only
        # adds the caller's words (first-turn TTFT 347 -> ~190 ms on the CPU profile).
        prefix: list[Message] = [{"role": "system", "content": options.system_prompt}]
        if options.greeting:
            prefix.append({"role": "assistant", "content": options.greeting})
        try:
            await asyncio.wait_for(warm(prefix, list(tools) or None), 60.0)
        except Exception:  # a cold prefix only costs latency: never refuse the call for it
            log.warning("warming %s failed", llm.name, exc_info=True)
    texts = {name: getattr(options.fallback, name) for name in _LINE_NAMES}
    if options.greeting:
        texts["greeting"] = options.greeting
    lines = await FallbackLines.prepare(texts, tts, options.voice)
    if detector is None:
        detector = await asyncio.to_thread(TurnDetector.from_models, SAMPLE_RATE, options.turn)
    return PreparedSession(lines, detector)


_LINE_NAMES = (
    "holding",
    "apology",
    "still_there",
    "not_heard",
    "silence_goodbye",
    "failure_goodbye",
    "time_limit",
)


async def answer_and_run(
    incoming: IncomingCall,
    engines: Engines | Sequence[Any],
    options: SessionOptions | None = None,
    **kwargs: Any,
) -> CallRecord:
    """Prepare (warm prefix, lines) first, then answer and run the call to its end."""
    tools = kwargs.get("tools", ())
    prepared = await prepare_session(engines, options, tools)
    call = await incoming.answer()
    return await CallSession(call, engines, options, prepared=prepared, **kwargs).run()


class CallSession:
    def __init__(
        self,
        call: Call,
        engines: Engines | Sequence[Any],
        options: SessionOptions | None = None,
        *,
        prepared: PreparedSession | None = None,
        tools: Sequence[Tool] = (),
        tool_executor: ToolExecutor | None = None,
        record_sink: RecordSink | None = None,
        escalate: EscalateHook | None = None,
        director: CallDirector | None = None,
    ) -> None:
        self.call = call
        self.engines = Engines(*engines)
        self.options = options or SessionOptions()
        self.tools = list(tools)
        self._prepared = prepared
        self._sink = record_sink
        self._escalate = escalate
        self._tool_executor = tool_executor
        self._t0 = time.monotonic()
        self.record = CallRecord(
            call_id=call.info.call_id,
            caller=call.info.caller,
            callee=call.info.callee,
            direction=call.info.direction,
            started_at=dt.datetime.now(dt.UTC),
            agent_name=self.options.agent_name,
        )
        self.playout = Playout(call)
        self.history = ConversationHistory(
            self.options.system_prompt, self.options.max_history_turns
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self._turn_task: asyncio.Task[None] | None = None
        self._open_speech: list[AgentSpeech] = []  # said, not yet in the transcript
        self._interrupted: AgentSpeech | None = None  # cut by barge-in, may resume
        self._over_agent = False  # the caller's current utterance began over agent speech
        self._carry = ""  # caller text of a turn cancelled before any reply audio
        self._asked_again = False  # the not_heard line was the agent's last word
        self._turns = 0
        self._caller_activity = 0  # bumps on every SpeechStarted (silence watcher)
        self._failures = 0  # consecutive failed stages
        self._stop = asyncio.Event()
        self._end_outcome: Outcome | None = None
        self._end_line: str | None = None
        self._detector: TurnDetector | None = None
        self._lines: FallbackLines | None = None
        self._pipeline: ReplyPipeline | None = None
        self._speculative = SpeculativeSTT(self.engines.stt, self.options.stt_timeout_s)
        # Workflow-directed call: the director, not the free LLM reply, answers turns.
        self._director = director
        self._director_ended = False  # the director's outcome ended the call

    @property
    def busy(self) -> bool:
        """The caller is mid-utterance, or the agent is thinking or talking."""
        detector_speaking = self._detector is not None and self._detector.speaking
        turn_running = self._turn_task is not None and not self._turn_task.done()
        return detector_speaking or turn_running or self.playout.playing

    # ------------------------------------------------------------ lifecycle

    async def run(self) -> CallRecord:
        """Run the call until it ends; the record is handed to the sink whatever happens."""
        try:
            prepared = self._prepared or await prepare_session(
                self.engines, self.options, self.tools
            )
            self._detector, self._lines = prepared.detector, prepared.lines
            self._detector.reset()
            self._pipeline = ReplyPipeline(
                self.engines.llm,
                self.engines.tts,
                self.playout,
                self.options,
                tools=self.tools,
                tool_executor=self._tool_executor,
                clock=self._now,
            )
            await self._supervise()
        except Exception as exc:
            log.exception("call %s: session failed", self.record.call_id)
            self._error("session", f"{type(exc).__name__}: {exc}", retried=False)
            self.record.outcome = "error"
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.call.hangup(), 5.0)
        except asyncio.CancelledError:
            # The server is shutting down: do not leave the caller on an open line.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.call.hangup(), 5.0)
            raise
        finally:
            self._speculative.close()  # a transcription started at the last pause
            await self._cancel_all()
            await self._finish_record()
        return self.record

    async def _supervise(self) -> None:
        opts = self.options
        if opts.greeting and self._lines is not None:
            await self._play_line("greeting", kind="greeting")
        if self._director is not None:  # its opening is a turn: barge-in and holding apply
            self._turn_task = self._spawn(self._direct(None, AgentSpeech(kind="speech")), "open")
        watched = {
            self._spawn(self._listen(), "listen"),
            self._spawn(self._watch_silence(), "silence"),
            self._spawn(self.call.wait_ended(), "ended"),
            self._spawn(self._stop.wait(), "stop"),
        }
        remaining = opts.max_call_s - (time.monotonic() - self._t0)
        done, _ = await asyncio.wait(
            watched, timeout=max(0.0, remaining), return_when=asyncio.FIRST_COMPLETED
        )
        if not done:
            self._request_end("max_duration", "time_limit")
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # a bug in a session task: recorded by run()
        await self._cancel_all()
        if self.call.end_reason is not None:
            return  # the far end hung up (or the transport went away)
        if self._end_line is not None:
            await self._play_line(self._end_line, kind="goodbye")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                self.call.drain(), min(opts.goodbye_drain_s, self.playout.remaining_s + 1.0)
            )
            self._commit_open_speech(self.playout.position)  # all of it went out
        if self._director_ended:
            handed_over = self._director is not None and await self._director.hand_over(self.call)
        else:
            handed_over = self._end_outcome == "escalated"  # the escalation hook owns it now
        if not handed_over:
            await self.call.hangup()

    def _request_end(self, outcome: Outcome, line: str | None) -> None:
        if self._end_outcome is None:
            self._end_outcome, self._end_line = outcome, line
        self._stop.set()

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=f"call-{self.record.call_id}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _cancel_all(self) -> None:
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _finish_record(self) -> None:
        record = self.record
        self._commit_open_speech(None)
        record.transcript.sort(key=lambda e: e.start_s)
        reason = self.call.end_reason
        record.end_reason = reason.value if reason is not None else None
        if record.outcome == "in_progress":
            record.outcome = self._end_outcome or "completed"
        record.ended_at = dt.datetime.now(dt.UTC)
        record.duration_s = round(self._now(), 3)
        if self._sink is not None:
            try:
                await self._sink.on_call_end(record)
            except Exception:
                log.exception("call %s: the record sink failed", record.call_id)

    def _now(self) -> float:
        return time.monotonic() - self._t0

    # ------------------------------------------------------------ caller audio

    async def _listen(self) -> None:
        assert self._detector is not None
        async for frame in self.call.audio_in():
            pcm = np.frombuffer(frame, dtype="<i2").astype(np.int16, copy=False)
            for event in await self._detector.feed(pcm):
                self._on_turn_event(event)

    def _on_turn_event(self, event: TurnEvent) -> None:
        if isinstance(event, SpeechStarted):
            self._on_speech_started(event)
        elif isinstance(event, TurnEnded):
            self._speculative.on_turn_end(event)
            previous = self._turn_task
            self._turn_task = self._spawn(self._turn(event, previous), f"turn-{self._turns}")
        elif isinstance(event, SpeechPaused):
            self._speculative.on_pause(event)  # transcribe now; used if the turn ends here
        elif isinstance(event, SpeechResumed):
            self._speculative.on_resume()
        elif isinstance(event, VoiceStarted):
            # Barge-in, step 1: the caller's first voice takes the agent off the wire at
            # once (kept, not dropped: it may be a blip). SpeechStarted confirms it.
            if self.playout.pause(PAUSE_MAX_S):
                self._event("barge_in_pause")
        elif isinstance(event, VoiceStopped) and self.playout.paused:
            self._spawn(self.playout.resume(), "resume")  # a blip: carry on where it stopped
            self._event("barge_in_resume")

    def _on_speech_started(self, event: SpeechStarted) -> None:
        self._caller_activity += 1
        agent_talking = self.playout.playing or any(
            s.started_audio and not s.finished for s in self._open_speech
        )
        self._over_agent = agent_talking
        if agent_talking:
            # Barge-in: stop the audio first (it is what the caller hears), then the work.
            heard_until = self.playout.flush()
            self._event("barge_in", f"heard_until={heard_until}")
        else:
            heard_until = self.playout.position
        self._commit_open_speech(heard_until)
        task = self._turn_task
        if task is not None and not task.done():
            task.cancel()

    # ------------------------------------------------------------ one turn

    async def _turn(self, event: TurnEnded, previous: asyncio.Task[None] | None) -> None:
        if previous is not None and not previous.done():
            with contextlib.suppress(asyncio.CancelledError):
                await previous  # it was cancelled at SpeechStarted; let it wind down
        self._turns += 1
        trace = TurnTrace(index=self._turns, end_of_turn_reason=event.reason)
        self.record.turns.append(trace)
        trace.mark("speech_end", event.decided_monotonic - (event.decision_s - event.speech_end_s))
        trace.mark("turn_end", event.decided_monotonic)
        speech = AgentSpeech(kind="speech", trace=trace)
        holding = self._spawn(self._hold_if_quiet(trace, speech), f"holding-{trace.index}")
        try:
            await self._answer(event, trace, speech)
        except StageFailed as exc:
            trace.error = str(exc)
        finally:
            holding.cancel()

    async def _answer(self, event: TurnEnded, trace: TurnTrace, speech: AgentSpeech) -> None:
        text = await self._retrying("stt", trace, lambda: self._transcribe(event))
        trace.mark("stt_done")
        trace.caller_text = text
        interrupted, self._interrupted = self._interrupted, None
        start_s = event.speech_start_s
        end_s = event.speech_end_s
        if not words(text):
            if interrupted is not None:  # a noise cut the agent off: carry on
                await self._resume(interrupted)
            elif self._unheard_speech(event):
                self._asked_again = True
                self._event("not_heard", f"{event.speech_end_s - event.speech_start_s:.1f}s")
                await self._play_line("not_heard", kind="prompt")
            return
        self._asked_again = False
        opts = self.options
        if (
            interrupted is not None
            and self._over_agent
            and is_backchannel(text, opts.backchannels, opts.backchannel_max_words)
        ):
            self._add_entry("caller", text, start_s, end_s, kind="backchannel")
            self._event("backchannel_resume", text)
            await self._resume(interrupted)
            return
        self._add_entry("caller", text, start_s, end_s)
        user_text = f"{self._carry} {text}".strip()
        self._carry = user_text  # until the reply starts playing
        speech.exchange.append({"role": "user", "content": user_text})
        self._open_speech.append(speech)
        await self._speak_reply(trace, speech)

    def _unheard_speech(self, event: TurnEnded) -> bool:
        """The caller said something real that STT made no words of, and the agent has
        not just asked them to repeat (a TV or a hum must not loop the request)."""
        least = self.options.not_heard_min_s
        spoken_s = event.speech_end_s - event.speech_start_s
        return least > 0 and spoken_s >= least and not self._asked_again

    async def _speak_reply(self, trace: TurnTrace, speech: AgentSpeech) -> None:
        assert self._pipeline is not None
        if self._director is not None:
            await self._direct(speech.exchange[-1]["content"], speech)
            return
        for attempt in (1, 2):
            try:
                await self._pipeline.reply(self.history.messages(speech.exchange), speech)
                self._failures = 0
                self._carry = ""
                return
            except StageFailed as exc:
                trace.error = str(exc)
                # Retrying after some of the reply was heard would repeat it: only a
                # reply that has not started yet is tried again.
                retry = attempt == 1 and not speech.started_audio
                await self._stage_failed(exc, retried=retry)
                if not retry:
                    raise
                # Nothing of it was heard: start the reply afresh (tool results stay).
                speech.generated.clear()
                speech.segments.clear()

    async def _direct(self, text: str | None, speech: AgentSpeech) -> None:
        """Say the director's answer to `text` (None: its opening), sentence by sentence;
        a failure is apologised for and retried once, like a model stage (a second one
        ends the call through _stage_failed)."""
        assert self._pipeline is not None and self._director is not None
        if not any(s is speech for s in self._open_speech):  # by identity: dataclass eq
            self._open_speech.append(speech)
        for attempt in (1, 2):
            retry = attempt == 1
            try:
                reply = await self._director.respond(text)
            except StageFailed as exc:
                await self._stage_failed(exc, retried=retry)
                if not retry:
                    return  # _stage_failed has ended the call
                continue
            self.record.workflow = self._director.summary()
            try:
                await self._pipeline.say(reply.texts, speech)
            except StageFailed as exc:
                retry = retry and not speech.started_audio
                await self._stage_failed(exc, retried=retry)
                if not retry:
                    return
                self._director.unsaid(reply)
                speech.generated.clear()
                speech.segments.clear()
                continue
            except asyncio.CancelledError:
                if not speech.started_audio:  # cut before a word of it: say it next turn
                    self._director.unsaid(reply)
                raise
            self._failures = 0
            self._carry = ""
            if reply.outcome is not None:
                self._director_ended = True
                self._request_end(reply.outcome, None)
            return

    async def _transcribe(self, event: TurnEnded) -> str:
        stt = self.engines.stt
        try:
            transcript = await self._speculative.take(event)  # started at the pause
            if transcript is None:
                transcript = await asyncio.wait_for(
                    stt.transcribe(event.pcm, event.sample_rate), self.options.stt_timeout_s
                )
        except TimeoutError:
            raise StageFailed(
                "stt", f"no transcript within {self.options.stt_timeout_s:g} s"
            ) from None
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise StageFailed("stt", f"{type(exc).__name__}: {exc}") from exc
        return transcript.text.strip()

    async def _retrying(
        self, stage: str, trace: TurnTrace, attempt: Callable[[], Awaitable[str]]
    ) -> str:
        """Run a stage; on failure apologise and try once more; then give up the call."""
        for number in (1, 2):
            try:
                result = await attempt()
                self._failures = 0
                return result
            except StageFailed as exc:
                trace.error = str(exc)
                await self._stage_failed(exc, retried=number == 1)
                if number == 2:
                    raise
        raise AssertionError("unreachable")

    async def _stage_failed(self, exc: StageFailed, *, retried: bool) -> None:
        """Say sorry at once (no dead air); after two failures in a row, end the call."""
        log.warning("call %s: %s", self.record.call_id, exc)
        self._error(exc.stage, exc.detail, retried=retried)
        self._failures += 1
        if self._failures == 1:
            await self._play_line("apology", kind="apology")
            return
        if self._escalate is not None:
            try:
                if await self._escalate(self.record, str(exc)):
                    self._request_end("escalated", None)
                    return
            except Exception:
                log.exception("call %s: escalation hook failed", self.record.call_id)
        self._request_end("failed", "failure_goodbye")

    async def _resume(self, interrupted: AgentSpeech) -> None:
        """Say the rest of a reply cut off by a backchannel, from the cut sentence on."""
        assert self._pipeline is not None
        rest = interrupted.generated[interrupted.resume_from :]
        if not rest:
            return
        speech = AgentSpeech(kind="speech")
        self._open_speech.append(speech)
        try:
            await self._pipeline.say(rest, speech)
        except StageFailed as exc:
            await self._stage_failed(exc, retried=False)

    async def _hold_if_quiet(self, trace: TurnTrace, speech: AgentSpeech) -> None:
        """Play the holding line if no reply audio is out `holding_after_s` after the turn."""
        assert trace.turn_end is not None
        delay = trace.turn_end + self.options.holding_after_s - time.monotonic()
        await asyncio.sleep(max(0.0, delay))
        if not speech.started_audio and not self.playout.playing:
            trace.holding_played = True
            await self._play_line("holding", kind="holding")

    # ------------------------------------------------------------ silence

    async def _watch_silence(self) -> None:
        opts = self.options
        assert self._detector is not None
        idle_since = time.monotonic()
        prompted_at_activity: int | None = None
        while True:
            await asyncio.sleep(0.1)
            now = time.monotonic()
            if self.busy:
                idle_since = now
                continue
            if prompted_at_activity is not None and prompted_at_activity != self._caller_activity:
                prompted_at_activity = None  # the caller spoke since the prompt
            idle = now - idle_since
            if prompted_at_activity is None and idle >= opts.silence_prompt_s:
                self._event("silence_prompt")
                prompted_at_activity = self._caller_activity
                await self._play_line("still_there", kind="prompt")
                idle_since = time.monotonic()
            elif prompted_at_activity is not None and idle >= opts.silence_hangup_s:
                self._event("silence_hangup")
                self._request_end("caller_silent", "silence_goodbye")
                return

    # ------------------------------------------------------------ speaking & transcript

    async def _play_line(self, name: str, *, kind: EntryKind) -> None:
        """Queue a pre-synthesized line (the greeting also goes into the LLM history)."""
        assert self._lines is not None
        line: Line = self._lines.get(name)
        speech = AgentSpeech(kind=kind, generated=[line.text])
        segment = SpokenSegment(line.text, self.playout.position, self.playout.position)
        speech.segments.append(segment)
        speech.first_write_at = await self.playout.write(line.pcm, segment)
        segment.complete = True
        speech.finished = True
        self._open_speech.append(speech)

    def _commit_open_speech(self, heard_until: int | None) -> None:
        """Move agent speech into the transcript and history with what was heard of it.

        `heard_until`: stream position where playback stopped (barge-in); None: the
        call is over, so audio still queued by the clock estimate was not heard.
        """
        if heard_until is None:
            queued = round(self.playout.remaining_s * SAMPLE_RATE)
            heard_until = max(0, self.playout.position - queued)
        for speech in self._open_speech:
            text, index = heard_text(speech.segments, heard_until)
            intended = " ".join(speech.generated)
            cut = index < len(speech.segments) or not speech.finished
            if speech.segments or text:
                start = (speech.first_write_at or time.monotonic()) - self._t0
                first = speech.segments[0].start if speech.segments else heard_until
                end = (
                    start + max(0, min(heard_until, speech.segments[-1].end) - first) / SAMPLE_RATE
                )
                if text:
                    self._add_entry(
                        "agent",
                        text,
                        start,
                        end,
                        kind=speech.kind,
                        interrupted=cut,
                        intended=intended if cut else None,
                    )
            if speech.trace is not None:
                speech.trace.agent_text = text
                speech.trace.interrupted = cut
            self.record.tool_calls.extend(speech.tool_calls)
            if speech.kind in ("speech", "greeting"):
                self._remember(speech, text)
            if cut and speech.kind in ("speech", "greeting") and speech.started_audio:
                speech.resume_from = index
                self._interrupted = speech
            if text:
                self._carry = ""  # the caller heard an answer to it
        self._open_speech.clear()

    def _remember(self, speech: AgentSpeech, heard: str) -> None:
        if speech.kind == "greeting":
            self.history.add_agent_line(heard)
            return
        exchange = list(speech.exchange)
        if heard:
            exchange.append({"role": "assistant", "content": heard})
        if exchange and any(m["role"] == "user" for m in exchange):
            if not heard:
                return  # nothing was said back: the caller's words carry to the next turn
            self.history.add_turn(exchange)
        elif heard:
            self.history.add_agent_line(heard)

    def _add_entry(
        self,
        speaker: str,
        text: str,
        start_s: float,
        end_s: float,
        *,
        kind: EntryKind = "speech",
        interrupted: bool = False,
        intended: str | None = None,
    ) -> None:
        self.record.transcript.append(
            TranscriptEntry(
                speaker=speaker,  # type: ignore[arg-type]
                text=text,
                start_s=round(start_s, 3),
                end_s=round(end_s, 3),
                kind=kind,
                interrupted=interrupted,
                intended_text=intended,
            )
        )

    def _event(self, kind: str, detail: str = "") -> None:
        now = time.monotonic()
        self.record.events.append(SessionEvent(kind, round(now - self._t0, 3), detail, now))

    def _error(self, stage: str, message: str, *, retried: bool) -> None:
        self.record.errors.append(SessionError(stage, message, round(self._now(), 3), retried))
