"""`trunkline call`: call the agent over real SIP with a recorded caller, turn by turn.

    trunkline call --wav question.wav --record reply.wav [--to URI] [--json]

IN.wav is split into utterances at silences of --gap seconds or more; each is played
after the agent's previous reply ended. Prints both sides' text (from the server's
call record, `GET /api/calls/{call_id}`) and per-turn latencies.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import click

DEFAULT_URI = "sip:agent@127.0.0.1:5060"


def _utterances(wav: Path, gap_s: float) -> list:
    from agent.app.utterances import read_caller_audio, split_utterances
    from serving.base import BadInput

    try:
        pcm = read_caller_audio(wav.read_bytes())
    except (OSError, BadInput) as exc:
        raise click.ClickException(f"cannot read {wav}: {exc}") from None
    utterances = split_utterances(pcm, gap_s)
    if not utterances:
        raise click.ClickException(f"{wav} holds no speech (only silence)")
    return utterances


async def _run(utterances: list, uri: str, options: object, api: str | None) -> tuple[dict, Any]:
    from agent.app.call_report import build_report, fetch_record, find_api
    from agent.app.dialer import DialError, talk
    from agent.app.sip_probe import SipUnreachable, probe
    from telephony.sip_endpoint import uri_destination

    try:
        host, port = uri_destination(uri)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        await probe(host, port)
    except SipUnreachable as exc:
        raise click.ClickException(f"{exc} (is `trunkline serve` running?)") from None
    try:
        result = await talk(uri, utterances, options)  # type: ignore[arg-type]
    except DialError as exc:
        raise click.ClickException(str(exc)) from None
    base = await find_api(host, api)
    server = await fetch_record(base, result.call_id) if base else None
    return build_report(result, server), result.received


@click.command()
@click.option(
    "--wav",
    "wav",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The caller's audio (any rate; utterances split on silences).",
)
@click.option(
    "--record",
    "record",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write everything the agent sent to this WAV (8 kHz).",
)
@click.option("--to", "uri", default=DEFAULT_URI, show_default=True, help="SIP URI to call.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(1, 600),
    default=30.0,
    show_default=True,
    help="Longest wait for the answer, the greeting and each reply (seconds).",
)
@click.option(
    "--api",
    default=None,
    help="Agent API base URL for the call record [http://HOST:8000, then :8001 (Ray)].",
)
@click.option(
    "--bind", "bind", default="127.0.0.1:0", show_default=True, help="Local SIP HOST:PORT."
)
@click.option("--rtp-ports", default="20000-30000", show_default=True, help="Local RTP port range.")
@click.option(
    "--gap",
    "gap_s",
    type=click.FloatRange(0.2, 10),
    default=0.7,
    show_default=True,
    help="Silence (s) that separates two caller utterances.",
)
@click.option(
    "--quiet",
    "quiet_s",
    type=click.FloatRange(0.2, 10),
    default=1.2,
    show_default=True,
    help="Agent silence (s) that ends its reply.",
)
@click.option("--no-greeting", is_flag=True, help="Speak at once instead of awaiting a greeting.")
def call(
    wav: Path,
    record: Path | None,
    uri: str,
    as_json: bool,
    timeout_s: float,
    api: str | None,
    bind: str,
    rtp_ports: str,
    gap_s: float,
    quiet_s: float,
    no_greeting: bool,
) -> None:
    """Call the agent with IN.wav as the caller; record and time its replies."""
    from agent.app.call_report import format_report
    from agent.app.dialer import DialOptions
    from agent.app.settings import parse_host_port, parse_port_range
    from serving.factory import ConfigError

    try:
        options = DialOptions(
            bind=parse_host_port(bind, 0),
            rtp_ports=parse_port_range(rtp_ports),
            ring_timeout_s=timeout_s,
            reply_timeout_s=timeout_s,
            quiet_s=quiet_s,
            greeting=not no_greeting,
        )
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from None
    utterances = _utterances(wav, gap_s)
    report, received = asyncio.run(_run(utterances, uri, options, api))
    if record is not None:
        from serving.audio import encode_wav

        record.write_bytes(encode_wav(received, 8000))
    recorded_s = received.size / 8000
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(format_report(report, str(record) if record else None, recorded_s))


if __name__ == "__main__":  # `python -m agent.cli.call_cmd` before the CLI registers it
    call()
