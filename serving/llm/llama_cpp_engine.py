"""llama.cpp chat engine (llama-cpp-python): the CPU twin of the vLLM engine.

One model, driven token by token from one worker thread: llama.cpp is not re-entrant,
and the event loop must never wait on inference. Structured output (JSON, JSON schema,
choices, forced tool calls) is enforced by llama.cpp grammars; prompt prefixes are reused
from the live KV cache or from saved states (see prefix_cache.py).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import ctypes
import json
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from jsonschema.validators import validator_for

try:
    import llama_cpp
    from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf
except ImportError as exc:  # source-only package: say how to get it
    raise ImportError(
        "llama-cpp-python is not installed: build the wheel with "
        "serving/envs/build_llama_cpp_wheel.sh and `pip install --no-deps` it"
    ) from exc

from serving.base import BadInput, ChatDelta, EngineError, Message, Tool, ToolCall, Usage
from serving.llm.chat_prompt import ChatTemplate, check_messages, check_sampling
from serving.llm.prefix_cache import PrefixStateCache
from serving.llm.tool_calls import (
    TOOL_CALL_OPEN,
    ToolChoice,
    ToolTagSplitter,
    check_json_schema,
    forced_call_schema,
    parse_call_json,
    parse_hermes,
    resolve_tool_choice,
    validate_tool_call,
)

FinishReason = Literal["stop", "length", "tool_calls"]
_END = object()  # worker -> stream: generation finished
# Generation runs at most this many deltas ahead of its reader. A reader that pauses (the
# reply pipeline while TTS voices the first clause) pauses the model too, so the two do
# not fight over the same cores; a reader gone quiet for longer is not waited for.
MAX_DELTAS_AHEAD = 2
MAX_READER_PAUSE_S = 5.0
_SEQ = 0  # llama-cpp-python keeps everything in sequence 0


@dataclass(frozen=True)
class _Plan:
    """A checked request, ready for the worker thread."""

    prompt: str
    stable_prefix: str
    output: Literal["text", "json", "tool_call"]
    tools: Sequence[Tool] | None
    choice: ToolChoice
    max_tokens: int
    temperature: float
    grammar: str | None = None
    schema: dict[str, Any] | None = None  # checked again on the finished JSON text
    choices: tuple[str, ...] = ()
    parse_tool_calls: bool = False  # "auto": hermes blocks in the text become calls
    stop_at_tool_tag: bool = False  # "none" with tools: a tool-call tag ends the answer


@dataclass
class _Counters:
    prompt: int = 0
    completion: int = 0
    cached: int = 0

    def usage(self) -> Usage:
        return Usage(self.prompt, self.completion, self.cached)


class LlamaCppLLM:
    """LLMEngine on a local GGUF file.

    `n_threads` (decode) and `n_threads_batch` (prompt) default to half the cores.
    `state_cache_size` saved system-prompt states are kept (about 12 MB per 1000 tokens
    for Qwen2.5-0.5B) so alternating agents stay warm. `prefill_chunk` bounds how long a
    cancelled request can still hold the model while its prompt is being processed.
    """

    name = "llama.cpp"

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        n_ctx: int = 4096,
        n_threads: int | None = None,
        *,
        n_threads_batch: int | None = None,
        n_batch: int = 512,
        prefill_chunk: int = 128,
        state_cache_size: int = 4,
        min_snapshot_tokens: int = 32,
        seed: int = 0,
    ) -> None:
        path = Path(model_path)
        if not path.is_file():
            raise EngineError(f"llama.cpp model file not found: {path}")
        # Half the cores by default: llama.cpp's threads spin at barriers, and when they
        # compete with STT/TTS for every core, decode speed collapses (measured 19 -> 1
        # tok/s on a busy 2-core box going from 1 to 2 threads). Prompts too: on an idle
        # box 2 threads halve a turn's prefill (179 -> 96 ms), but with any other load on
        # the cores its p95 went from 0.6 to 2.7 s (benchmarks/results/turn_latency-cpu.md).
        threads = n_threads or max(1, (os.cpu_count() or 2) // 2)
        batch_threads = n_threads_batch or threads
        try:
            self._llm = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_batch=n_batch,
                n_threads=threads,
                n_threads_batch=batch_threads,
                seed=seed,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise EngineError(f"llama.cpp could not load {path}: {exc}") from exc
        self.model_path = path
        self.n_ctx = self._llm.n_ctx()
        self._seed = seed
        self._prefill_chunk = max(1, prefill_chunk)
        self._min_snapshot_tokens = min_snapshot_tokens
        self._vocab = llama_cpp.llama_model_get_vocab(self._llm.model)
        self._template = self._load_template()
        self._tool_tag_token = self._single_token(TOOL_CALL_OPEN)
        self._states = PrefixStateCache(max_entries=state_cache_size)
        # One worker thread: requests queue here instead of blocking the event loop; the
        # lock also covers warm() and close(), which touch the same model state.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama-cpp")
        self._lock = threading.Lock()
        self.last_usage: Usage | None = None  # also set for cancelled requests

    # ------------------------------------------------------------ public API

    async def chat(
        self,
        messages: Sequence[Message],
        *,
        tools: Sequence[Tool] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        response_format: dict[str, Any] | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
    ) -> AsyncIterator[ChatDelta]:
        """Stream the answer; closing the iterator stops generation within a token."""
        plan = self._plan(messages, tools, tool_choice, response_format, max_tokens, temperature)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        cancel, started = threading.Event(), threading.Event()
        pacer = _ReaderPacer(cancel)

        def emit(item: Any) -> None:
            if isinstance(item, ChatDelta):
                pacer.wait()
            with contextlib.suppress(RuntimeError):  # loop closed: nobody is listening
                loop.call_soon_threadsafe(queue.put_nowait, item)

        job = loop.run_in_executor(self._executor, self._run, plan, emit, cancel, started)
        try:
            while (item := await queue.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                pacer.read()
                yield item
        finally:
            cancel.set()
            # Once this request owns the model, return only when it is idle again, so
            # "closed" means "stopped". A request still queued exits as soon as it starts.
            if started.is_set():
                await asyncio.wait([job])

    async def warm(self, messages: Sequence[Message], tools: Sequence[Tool] | None = None) -> int:
        """Process `messages` (and tools) ahead of a request, e.g. an agent's system prompt
        before a call is answered; its state is saved so later requests start from it.
        Returns how many prompt tokens are now cached."""
        checked = check_messages(messages)
        resolve_tool_choice(None, tools)  # checks the tools
        prompt = self._template.render(checked, tools, add_generation_prompt=False)
        prefix = self._template.stable_prefix(checked, tools)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._warm, prompt, prefix)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        with self._lock:
            self._llm.close()

    # ------------------------------------------------------------ request planning

    def _plan(
        self,
        messages: Sequence[Message],
        tools: Sequence[Tool] | None,
        tool_choice: str | dict[str, Any] | None,
        response_format: dict[str, Any] | None,
        max_tokens: int,
        temperature: float,
    ) -> _Plan:
        checked = check_messages(messages)
        choice = resolve_tool_choice(tool_choice, tools)
        check_sampling(max_tokens, temperature)
        # Tools stay in the prompt whatever the choice, so the system prefix (and its
        # cached state) is the same on every turn of a conversation.
        prompt = self._template.render(checked, tools)
        base = {
            "stable_prefix": self._template.stable_prefix(checked, tools),
            "tools": tools,
            "choice": choice,
            "max_tokens": max_tokens,
            "temperature": float(temperature),
        }
        constrained = _response_constraint(response_format)
        if choice.forced:
            if constrained is not None:
                raise BadInput("response_format cannot be combined with a forced tool_choice")
            # Open the call ourselves, as the template would have the model do, and let
            # the grammar allow only a call to the chosen tool(s) with valid-shaped args.
            schema = forced_call_schema(choice, tools or ())
            grammar = _grammar_from_schema(schema, "the tools' parameters")
            return _Plan(
                prompt=prompt + TOOL_CALL_OPEN + "\n", output="tool_call", grammar=grammar, **base
            )
        if constrained is not None:
            grammar, schema, choices = constrained
            return _Plan(
                prompt=prompt,
                output="json" if not choices else "text",
                grammar=grammar,
                schema=schema,
                choices=choices,
                **base,
            )
        return _Plan(
            prompt=prompt,
            output="text",
            parse_tool_calls=choice.mode == "auto",
            stop_at_tool_tag=choice.mode == "none" and bool(tools),
            **base,
        )

    # ------------------------------------------------------------ worker thread

    def _run(
        self,
        plan: _Plan,
        emit: Callable[[Any], None],
        cancel: threading.Event,
        started: threading.Event,
    ) -> None:
        started.set()
        counters = _Counters()
        try:
            with self._lock:
                if not cancel.is_set():
                    self._generate(plan, emit, cancel, counters)
        except EngineError as exc:
            emit(exc)
        except Exception as exc:
            emit(EngineError(f"llama.cpp failed while generating: {exc!r}"))
        finally:
            self.last_usage = counters.usage()
            emit(_END)

    def _generate(
        self,
        plan: _Plan,
        emit: Callable[[Any], None],
        cancel: threading.Event,
        counters: _Counters,
    ) -> None:
        tokens = self._tokenize(plan.prompt)
        room = self.n_ctx - len(tokens)
        if room < 1:
            raise BadInput(f"the prompt is {len(tokens)} tokens; the context holds {self.n_ctx}")
        counters.prompt = len(tokens)
        cached = self._prefill(tokens, self._prefix_length(plan.stable_prefix, tokens), cancel)
        if cached is None:
            return
        counters.cached = cached
        sampler = self._sampler(plan)
        splitter = None
        if plan.parse_tool_calls or plan.stop_at_tool_tag:
            splitter = ToolTagSplitter(bare_json_calls=plan.parse_tool_calls)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        text_parts: list[str] = []
        finish: FinishReason = "length"
        try:
            while counters.completion < min(plan.max_tokens, room):
                if cancel.is_set():
                    return
                token = llama_cpp.llama_sampler_sample(sampler, self._llm.ctx, -1)
                if llama_cpp.llama_vocab_is_eog(self._vocab, token):
                    finish = "stop"
                    break
                counters.completion += 1
                text = decoder.decode(self._llm.detokenize([token]))
                text_parts.append(text)
                if plan.output != "tool_call":
                    visible = splitter.feed(text) if splitter else text
                    if visible:
                        emit(ChatDelta(text=visible))
                    if splitter and splitter.tail is not None and plan.stop_at_tool_tag:
                        finish = "stop"
                        break
                self._llm.eval([token])
        finally:
            llama_cpp.llama_sampler_free(sampler)
        text = "".join(text_parts) + decoder.decode(b"", final=True)
        self._finish(plan, text, splitter, finish, counters, emit)

    def _finish(
        self,
        plan: _Plan,
        text: str,
        splitter: ToolTagSplitter | None,
        finish: FinishReason,
        counters: _Counters,
        emit: Callable[[Any], None],
    ) -> None:
        calls: list[ToolCall] = []
        if plan.output == "tool_call":
            if finish == "length":
                raise EngineError(
                    f"the forced tool call was cut off at max_tokens={plan.max_tokens}"
                )
            calls = [self._checked_call(parse_call_json, text, plan.tools)]
        elif splitter is not None:
            rest = splitter.flush()
            if rest:
                emit(ChatDelta(text=rest))
            if plan.parse_tool_calls and splitter.tail is not None:
                calls = self._calls_from_tail(splitter.tail, plan, finish, emit)
        elif finish == "stop":
            _check_constrained_text(plan, text)
        for call in calls:
            emit(ChatDelta(tool_call=call))
        emit(ChatDelta(finish_reason="tool_calls" if calls else finish, usage=counters.usage()))

    def _calls_from_tail(
        self, tail: str, plan: _Plan, finish: FinishReason, emit: Callable[[Any], None]
    ) -> list[ToolCall]:
        if tail.startswith(TOOL_CALL_OPEN):
            if finish == "length":
                raise EngineError(f"the tool call was cut off at max_tokens={plan.max_tokens}")
            after, raw_calls = parse_hermes(tail)
            calls = [self._checked_call(lambda c: c, call, plan.tools) for call in raw_calls]
            if after:
                emit(ChatDelta(text=after))
            return calls
        # An answer that opened with "{": a call without its tags, or just text.
        try:
            value = json.loads(tail)
        except ValueError:
            value = None
        if isinstance(value, dict) and "name" in value and "arguments" in value:
            return [self._checked_call(parse_call_json, tail, plan.tools)]
        emit(ChatDelta(text=tail))
        return []

    @staticmethod
    def _checked_call(make: Callable[[Any], ToolCall], raw: Any, tools: Any) -> ToolCall:
        try:
            call = make(raw)
            validate_tool_call(call, tools)
        except BadInput as exc:
            # The model got it wrong, not the caller: a server-side error, not a 4xx.
            raise EngineError(f"the model produced an invalid tool call: {exc}") from exc
        return call

    def _warm(self, prompt: str, prefix: str) -> int:
        with self._lock:
            tokens = self._tokenize(prompt)
            if len(tokens) >= self.n_ctx:
                raise BadInput(
                    f"the prompt is {len(tokens)} tokens; the context holds {self.n_ctx}"
                )
            self._prefill(tokens, self._prefix_length(prefix, tokens), threading.Event())
            return len(tokens)

    # ------------------------------------------------------------ KV cache reuse

    def _prefill(
        self, tokens: list[int], prefix_length: int, cancel: threading.Event
    ) -> int | None:
        """Bring the KV cache to `tokens`, reusing what it (or a saved state) already
        holds. Returns how many tokens were reused, or None when cancelled."""
        llm = self._llm
        live = _common_prefix_length(llm.input_ids[: llm.n_tokens], tokens)
        saved = self._states.longest_prefix_of(tokens)
        if saved is not None and len(saved.tokens) > live:
            self._restore(saved.tokens, saved.state)
            live = len(saved.tokens)
        # The last prompt token is always evaluated: sampling needs its logits.
        reused = min(live, len(tokens) - 1)
        llm.n_tokens = reused
        llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(llm.ctx), _SEQ, reused, -1)
        snapshot_at = None
        if (
            reused < prefix_length
            and prefix_length >= self._min_snapshot_tokens
            and tokens[:prefix_length] not in self._states
        ):
            snapshot_at = prefix_length
        position = reused
        for boundary in ([snapshot_at] if snapshot_at else []) + [len(tokens)]:
            while position < boundary:
                if cancel.is_set():
                    return None
                end = min(boundary, position + self._prefill_chunk)
                llm.eval(tokens[position:end])
                position = end
            if boundary == snapshot_at:
                self._states.put(tokens[:boundary], self._save_state())
        return reused

    def _save_state(self) -> bytes:
        ctx = self._llm.ctx
        size = llama_cpp.llama_state_seq_get_size(ctx, _SEQ)
        buffer = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(ctx, buffer, size, _SEQ)
        return ctypes.string_at(buffer, written)

    def _restore(self, tokens: tuple[int, ...], state: bytes) -> None:
        llm = self._llm
        llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(llm.ctx), _SEQ, 0, -1)
        llm.n_tokens = 0
        buffer = (ctypes.c_uint8 * len(state)).from_buffer_copy(state)
        if llama_cpp.llama_state_seq_set_data(llm.ctx, buffer, len(state), _SEQ) != len(state):
            raise EngineError("llama.cpp could not restore a saved prompt state")
        llm.input_ids[: len(tokens)] = tokens
        llm.n_tokens = len(tokens)

    # ------------------------------------------------------------ helpers

    def _load_template(self) -> ChatTemplate:
        source = self._llm.metadata.get("tokenizer.chat_template")
        if not source:
            raise EngineError(f"{self.model_path} has no chat template (tokenizer.chat_template)")
        return ChatTemplate(
            source, self._token_text(self._llm.token_bos()), self._token_text(self._llm.token_eos())
        )

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self._llm.detokenize([token], special=True).decode("utf-8", errors="replace")

    def _single_token(self, text: str) -> int | None:
        tokens = self._llm.tokenize(text.encode(), add_bos=False, special=True)
        return tokens[0] if len(tokens) == 1 else None

    def _tokenize(self, text: str) -> list[int]:
        bos = self._token_text(self._llm.token_bos())
        # Some templates write the BOS text themselves; do not add a second one.
        add_bos = not (bos and text.startswith(bos))
        return self._llm.tokenize(text.encode(), add_bos=add_bos, special=True)

    def _prefix_length(self, prefix: str, tokens: list[int]) -> int:
        if not prefix:
            return 0
        return _common_prefix_length(np.asarray(self._tokenize(prefix)), tokens)

    def _sampler(self, plan: _Plan) -> Any:
        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        try:
            if plan.stop_at_tool_tag and self._tool_tag_token is not None:
                bias = (llama_cpp.llama_logit_bias * 1)()
                bias[0].token, bias[0].bias = self._tool_tag_token, float("-inf")
                llama_cpp.llama_sampler_chain_add(
                    chain,
                    llama_cpp.llama_sampler_init_logit_bias(self._llm.n_vocab(), 1, bias),
                )
            if plan.grammar is not None:
                grammar = llama_cpp.llama_sampler_init_grammar(
                    self._vocab, plan.grammar.encode(), b"root"
                )
                if not grammar:
                    raise BadInput("the requested output format could not be compiled to a grammar")
                llama_cpp.llama_sampler_chain_add(chain, grammar)
            if plan.temperature <= 0.0:
                llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_greedy())
            else:
                for stage in (
                    llama_cpp.llama_sampler_init_top_k(40),
                    llama_cpp.llama_sampler_init_top_p(0.95, 1),
                    llama_cpp.llama_sampler_init_temp(plan.temperature),
                    llama_cpp.llama_sampler_init_dist(self._seed),
                ):
                    llama_cpp.llama_sampler_chain_add(chain, stage)
        except BaseException:
            llama_cpp.llama_sampler_free(chain)
            raise
        return chain


class _ReaderPacer:
    """Keeps the worker at most `MAX_DELTAS_AHEAD` deltas ahead of the stream's reader.
    A reader paused longer than `MAX_READER_PAUSE_S` (or a cancelled request) is no
    longer waited for, for the rest of the request."""

    def __init__(self, cancel: threading.Event) -> None:
        self._credits = threading.Semaphore(MAX_DELTAS_AHEAD)
        self._cancel = cancel
        self._waiting = True

    def wait(self) -> None:  # worker thread
        deadline = time.monotonic() + MAX_READER_PAUSE_S
        while self._waiting and not self._credits.acquire(timeout=0.02):
            if self._cancel.is_set() or time.monotonic() > deadline:
                self._waiting = False

    def read(self) -> None:  # event loop, for each delta taken
        self._credits.release()


def _common_prefix_length(cached: Sequence[int] | np.ndarray, tokens: Sequence[int]) -> int:
    size = min(len(cached), len(tokens))
    if size == 0:
        return 0
    differ = np.flatnonzero(np.asarray(cached[:size]) != np.asarray(tokens[:size]))
    return int(differ[0]) if differ.size else size


def _response_constraint(
    response_format: Mapping[str, Any] | None,
) -> tuple[str, dict[str, Any] | None, tuple[str, ...]] | None:
    """response_format -> (grammar, schema to check, allowed choices), or None for text."""
    if response_format is None:
        return None
    if not isinstance(response_format, Mapping):
        raise BadInput("response_format must be an object with a 'type'")
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return JSON_GBNF, {"type": "object"}, ()
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, Mapping) else None
        if schema is None:
            raise BadInput("response_format json_schema needs {'json_schema': {'schema': {...}}}")
        check_json_schema(schema, "response_format json_schema")
        return _grammar_from_schema(dict(schema), "response_format json_schema"), dict(schema), ()
    if kind == "choice":
        choices = response_format.get("choice")
        if (
            not isinstance(choices, list)
            or not choices
            or not all(isinstance(c, str) and c for c in choices)
        ):
            raise BadInput("response_format choice needs a non-empty list of non-empty strings")
        grammar = "root ::= " + " | ".join(_gbnf_literal(c) for c in choices)
        return grammar, None, tuple(choices)
    raise BadInput(
        f"response_format type must be text, json_object, json_schema or choice, got {kind!r}"
    )


def _grammar_from_schema(schema: dict[str, Any], what: str) -> str:
    try:
        return json_schema_to_gbnf(json.dumps(schema), prop_order=["name", "arguments"])
    except (ValueError, KeyError, TypeError, NotImplementedError, RecursionError) as exc:
        raise BadInput(f"{what} uses JSON-schema features llama.cpp cannot enforce: {exc}") from exc


def _gbnf_literal(text: str) -> str:
    escaped = "".join(
        ch
        if ch.isprintable() and ch not in '"\\'
        else f"\\u{ord(ch):04x}"
        if ord(ch) <= 0xFFFF
        else f"\\U{ord(ch):08x}"
        for ch in text
    )
    return f'"{escaped}"'


def _check_constrained_text(plan: _Plan, text: str) -> None:
    """The grammar shapes the output; the schema's value rules (ranges, formats) are
    checked here, since llama.cpp grammars do not express all of them."""
    if plan.choices:
        if text not in plan.choices:
            raise EngineError(f"the model's answer {text!r} is not one of the choices")
        return
    if plan.output != "json":
        return
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise EngineError(f"the model's JSON answer does not parse: {exc}") from exc
    if plan.schema is not None:
        errors = list(validator_for(plan.schema)(plan.schema).iter_errors(value))
        if errors:
            raise EngineError(f"the model's JSON answer breaks the schema: {errors[0].message}")
