"""`trunkline simulate`: simulated callers and simulated stores, through the same SIP path.

    trunkline simulate --say "My printer is jammed." --say "I opened the cover."
    trunkline simulate --script caller.txt [--record OUT.wav] [--json]
    trunkline simulate --workflow KBA3813 --persona busy [--server URL] [--api-key K] [--json]

With --say/--script, each line is one caller turn, said after the agent's previous reply
ended; the report is the same as `trunkline call`'s. With --workflow, the workflow's
scenario is loaded into a store simulator here (at the agent's configured store systems,
127.0.0.1:2222 and :8100, or a running one with --use-running-sim), the store's phone
answers as the persona, the running agent dials the ticket, and the report compares the
steps taken with the expected path.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import click
import numpy as np

from agent.cli.call_cmd import DEFAULT_URI, _run
from agent.controlplane.local_key import API_KEY_ENV, cli_api_key


async def _speak(lines: list[str], voice: str) -> list[np.ndarray]:
    from serving.audio import resample
    from serving.base import EngineError
    from serving.tts.espeak_engine import EspeakTTS

    try:
        tts = EspeakTTS(voice)
    except EngineError as exc:
        raise click.ClickException(str(exc)) from None
    out = []
    for line in lines:
        chunks = [c async for c in tts.synthesize(line)]
        pcm = np.concatenate([resample(c.pcm, c.sample_rate, 8000) for c in chunks])
        out.append(np.concatenate([pcm.astype(np.int16), np.zeros(1600, np.int16)]))
    return out


async def _simulate(lines: list[str], voice: str, uri: str, options: Any, api: str | None):
    utterances = await _speak(lines, voice)
    return await _run(utterances, uri, options, api)


def _workflow_report(result: dict[str, Any]) -> str:
    lines = [
        f"{result['workflow']} x {result['persona']} (scenario {result['scenario']}): "
        f"{result['outcome']} (expected {result['expected_outcome']})",
        f"steps: {result['step_score']:.0%} of the expected path"
        + ("" if result["path_ok"] else " (differs)"),
        f"  taken:    {' > '.join(s.split('.', 1)[-1] for s in result['steps']) or '-'}",
        f"  expected: {' > '.join(s.split('.', 1)[-1] for s in result['expected_steps'])}",
        f"turns: agent {result['agent_turns']}, store {result['phone_turns']}; "
        f"duration {result['duration_s']} s; ticket {result['ticket_status']}; "
        f"call {result['call_id']} ({result['end_reason']})",
    ]
    for turn in (result.get("phone") or {}).get("turns", []):
        lines.append(f"  agent: {turn['heard']}")
        lines.append(
            f"  store: {turn['said']}"
            + (f"  [{', '.join(turn['actions'])}]" if turn["actions"] else "")
        )
    if result.get("timed_out"):
        lines.append("the call had not ended when the timeout passed")
    return "\n".join(lines)


def _run_workflow(
    workflow: str,
    persona: str,
    server: str,
    api_key: str | None,
    use_running_sim: bool,
    sim_http: str,
    sim_ssh: str,
    phone_sip: str | None,
    call_timeout_s: float,
) -> dict[str, Any]:
    from agent.app.settings import parse_host_port
    from agent.storesim.evalrun import AgentApi, EvalError, SimPlace, get_case, run_case
    from agent.storesim.personas import PersonaError, get_persona
    from serving.factory import ConfigError

    try:
        get_case(workflow)
        get_persona(persona)
        place = SimPlace(
            http=parse_host_port(sim_http, 8100),
            ssh=parse_host_port(sim_ssh, 2222),
            use_running=use_running_sim,
            phone_sip=parse_host_port(phone_sip, 5070) if phone_sip else None,
        )
    except (EvalError, PersonaError, ConfigError) as exc:
        raise click.BadParameter(str(exc)) from None
    stt = None
    if not use_running_sim:
        import models
        from serving.stt.faster_whisper_engine import FasterWhisperSTT

        try:
            stt = FasterWhisperSTT(models.resolve("whisper-tiny.en"), cpu_threads=1)
        except models.ModelError as exc:
            raise click.ClickException(f"the store's phone needs Whisper: {exc}") from None
    api = AgentApi(server, cli_api_key(api_key))  # flag, $TRUNKLINE_API_KEY, else cli.key
    try:
        return asyncio.run(
            run_case(workflow, persona, api, stt=stt, place=place, timeout_s=call_timeout_s)
        )
    except EvalError as exc:
        raise click.ClickException(str(exc)) from None


@click.command()
@click.option("--workflow", help="Run this workflow's ticket call against a simulated store.")
@click.option(
    "--persona", default="cooperative", show_default=True, help="The store employee (--workflow)."
)
@click.option(
    "--server", default="http://127.0.0.1:8000", show_default=True, help="Agent API (--workflow)."
)
@click.option(
    "--api-key",
    default=None,
    help=f"Admin API key [${API_KEY_ENV}, else the local cli.key of `trunkline serve`].",
)
@click.option(
    "--use-running-sim",
    is_flag=True,
    help="Reset and use a running `trunkline store-sim` (and its phone) instead of starting one.",
)
@click.option("--sim-http", default="127.0.0.1:8100", show_default=True)
@click.option("--sim-ssh", default="127.0.0.1:2222", show_default=True)
@click.option(
    "--phone-sip",
    default=None,
    help="Put the store's phone (and its sip_uri) at HOST:PORT [default: the scenario's].",
)
@click.option(
    "--call-timeout",
    "call_timeout_s",
    type=click.FloatRange(10, 3600),
    default=600.0,
    show_default=True,
    help="Longest wait for a --workflow call to end.",
)
@click.option("--say", "said", multiple=True, help="One caller turn (repeatable).")
@click.option(
    "--script",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A text file: one caller turn per non-empty line.",
)
@click.option("--voice", default="en-us", show_default=True, help="espeak-ng voice.")
@click.option("--to", "uri", default=DEFAULT_URI, show_default=True, help="SIP URI to call.")
@click.option("--record", type=click.Path(dir_okay=False, path_type=Path), help="Agent audio WAV.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(1, 600), default=30.0)
@click.option("--api", default=None, help="Agent API base URL (see `trunkline call`).")
@click.option("--bind", default="127.0.0.1:0", show_default=True, help="Local SIP HOST:PORT.")
@click.option("--rtp-ports", default="20000-30000", show_default=True)
def simulate(
    workflow: str | None,
    persona: str,
    server: str,
    api_key: str | None,
    use_running_sim: bool,
    sim_http: str,
    sim_ssh: str,
    phone_sip: str | None,
    call_timeout_s: float,
    said: tuple[str, ...],
    script: Path | None,
    voice: str,
    uri: str,
    record: Path | None,
    as_json: bool,
    timeout_s: float,
    api: str | None,
    bind: str,
    rtp_ports: str,
) -> None:
    """Call the agent with a scripted caller, or have it call a simulated store."""
    if workflow is not None:
        if said or script is not None:
            raise click.UsageError("--workflow runs a store call; it takes no --say/--script")
        result = _run_workflow(
            workflow,
            persona,
            server,
            api_key,
            use_running_sim,
            sim_http,
            sim_ssh,
            phone_sip,
            call_timeout_s,
        )
        click.echo(json.dumps(result, indent=2) if as_json else _workflow_report(result))
        if not result["outcome_ok"]:
            raise SystemExit(1)
        return
    from agent.app.call_report import format_report
    from agent.app.dialer import DialOptions
    from agent.app.settings import parse_host_port, parse_port_range
    from serving.audio import encode_wav
    from serving.factory import ConfigError

    lines = list(said)
    if script is not None:
        lines += [line.strip() for line in script.read_text().splitlines() if line.strip()]
    if not lines:
        raise click.UsageError("nothing to say: give --say TEXT or --script FILE")
    try:
        options = DialOptions(
            bind=parse_host_port(bind, 0),
            rtp_ports=parse_port_range(rtp_ports),
            ring_timeout_s=timeout_s,
            reply_timeout_s=timeout_s,
        )
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from None
    report, received = asyncio.run(_simulate(lines, voice, uri, options, api))
    if record is not None:
        record.write_bytes(encode_wav(received, 8000))
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(format_report(report, str(record) if record else None, received.size / 8000))


if __name__ == "__main__":  # `python -m agent.cli.simulate_cmd` before the CLI registers it
    simulate()
