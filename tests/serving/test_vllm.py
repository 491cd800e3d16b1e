"""vLLM engine: the in-env checks run with the vLLM env's python, plus its pure-Python parts.

vLLM pins its own torch, so it lives in ~/.cache/trunkline/envs/vllm (built by
serving/envs/vllm/build.sh). The real-engine checks are tests/engines/vllm/engine_checks.py;
this file runs them there and fails, naming the build command, when the env is missing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from serving.base import BadInput, EngineError
from serving.llm.tool_calls import ToolTagSplitter
from serving.llm.vllm_engine import VLLMEngine, _plan_request
from tests.serving import model_path

REPO = Path(__file__).resolve().parents[2]
ENV_DIR = Path(os.environ.get("TRUNKLINE_ENVS", Path.home() / ".cache/trunkline/envs")) / "vllm"
CHECKS = "tests/engines/vllm/engine_checks.py"
CHECKS_TIMEOUT_S = 1500  # model build ~30 s, engine start 20-120 s on a busy 2-core box


def vllm_python() -> Path:
    python = ENV_DIR / "bin" / "python"
    if not (ENV_DIR / ".trunkline-stamp").is_file() or not python.is_file():
        pytest.fail(
            f"the vLLM env is missing at {ENV_DIR}; build it with: bash serving/envs/vllm/build.sh",
            pytrace=False,
        )
    return python


@pytest.mark.slow
@pytest.mark.timeout(CHECKS_TIMEOUT_S + 60)
def test_vllm_engine_checks_pass_in_the_vllm_env() -> None:
    python = vllm_python()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        # The tiny test model takes its tokenizer from the embedded Qwen GGUF.
        "TRUNKLINE_QWEN_GGUF": str(model_path("qwen2.5-coder-0.5b-instruct")),
    }
    command = [str(python), "-m", "pytest", CHECKS, "-q", "-rA", "-s", "-p", "no:cacheprovider"]
    try:
        run = subprocess.run(
            command,
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=CHECKS_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        tail = (exc.stdout or b"")[-4000:]
        pytest.fail(f"vLLM checks did not finish in {CHECKS_TIMEOUT_S} s:\n{tail!r}")
    output = run.stdout + run.stderr
    sys.stdout.write(_summary(output))
    assert run.returncode == 0, f"vLLM checks failed (exit {run.returncode}):\n{output[-8000:]}"
    assert " passed" in output


def _summary(output: str) -> str:
    """The checks' own timing lines and pytest's verdict, for `pytest -s` readers."""
    keep = [
        line
        for line in output.splitlines()
        if any(key in line for key in ("engine start", "12-token", "8 concurrent", "prefix cache"))
        or " passed" in line
    ]
    return "\n".join(keep) + "\n"


# ---------------------------------------------------------------- pure Python parts


def test_missing_model_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match=r"has no config\.json"):
        VLLMEngine(tmp_path / "nowhere")


def test_tool_call_tag_is_never_spoken_even_when_split_across_chunks() -> None:
    splitter = ToolTagSplitter(bare_json_calls=True)
    chunks = [
        "Let me check ",
        "that. <to",
        "ol_ca",
        'll>{"name": "restart_printer"',
        "}</tool_call>",
    ]
    spoken = "".join(splitter.feed(chunk) for chunk in chunks) + splitter.flush()
    assert spoken == "Let me check that. "
    assert splitter.tail == '<tool_call>{"name": "restart_printer"}</tool_call>'


def test_text_that_only_looks_like_a_tag_start_is_spoken() -> None:
    splitter = ToolTagSplitter(bare_json_calls=True)
    spoken = splitter.feed("Press <to") + splitter.feed("p> twice") + splitter.flush()
    assert spoken == "Press <top> twice"
    assert splitter.tail is None


def test_bare_json_answer_is_held_as_a_possible_call() -> None:
    splitter = ToolTagSplitter(bare_json_calls=True)
    assert splitter.feed('  {"name": "open_ticket", ') == ""
    assert splitter.feed('"arguments": {}}') == ""
    assert splitter.tail == '{"name": "open_ticket", "arguments": {}}'


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"response_format": {"type": "regex", "regex": ""}}, "regex"),
        ({"response_format": {"type": "choice", "choice": ["a", 3]}}, "choice"),
        ({"tool_choice": "sometimes", "tools": []}, "tool_choice"),
        ({"temperature": 5.0}, "temperature"),
    ],
)
def test_bad_requests_are_rejected_before_reaching_vllm(kwargs: dict, message: str) -> None:
    request = {
        "messages": [{"role": "user", "content": "hi"}],
        "tools": None,
        "tool_choice": None,
        "response_format": None,
        "max_tokens": 16,
        "temperature": 0.0,
        **kwargs,
    }
    with pytest.raises(BadInput, match=message):
        _plan_request(**request)
