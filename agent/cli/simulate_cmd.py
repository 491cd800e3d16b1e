"""`trunkline simulate`: a scripted caller, spoken by espeak-ng, through the same SIP path.

    trunkline simulate --say "My printer is jammed." --say "I opened the cover."
    trunkline simulate --script caller.txt [--record OUT.wav] [--json]

Each line (or --say) is one caller turn, said after the agent's previous reply ended;
the report is the same as `trunkline call`'s.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import click
import numpy as np

from agent.cli.call_cmd import DEFAULT_URI, _run


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


@click.command()
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
    """Call the agent with a scripted caller (text spoken by espeak-ng)."""
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
