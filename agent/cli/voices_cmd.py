"""`trunkline voices add|list|rm|preview`: the voices API from the command line.

It talks to a running `trunkline serve` over HTTP (the clone has to be computed and
preloaded by that server's TTS), with an API key from `trunkline apikey create`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

DEFAULT_URL = "http://127.0.0.1:8000"


def _client(ctx: click.Context) -> Any:
    import httpx

    obj = ctx.obj
    if not obj["api_key"]:
        raise click.UsageError("no API key: pass --api-key or set TRUNKLINE_API_KEY")
    return httpx.Client(
        base_url=obj["url"].rstrip("/") + "/api",
        headers={"Authorization": f"Bearer {obj['api_key']}"},
        # Cloning on a CPU takes minutes; previews tens of seconds.
        timeout=obj["timeout"],
    )


def _request(ctx: click.Context, method: str, path: str, **kwargs: Any) -> Any:
    import httpx

    try:
        with _client(ctx) as client:
            response = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach {ctx.obj['url']}: {exc}") from None
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        if isinstance(detail, list):  # FastAPI's validation errors
            detail = "; ".join(f"{'.'.join(map(str, d['loc'][1:]))}: {d['msg']}" for d in detail)
        raise click.ClickException(f"{response.status_code}: {detail}")
    return response


@click.group()
@click.option(
    "--url",
    envvar="TRUNKLINE_API_URL",
    default=DEFAULT_URL,
    show_default=True,
    help="The agent's HTTP address (env TRUNKLINE_API_URL).",
)
@click.option(
    "--api-key",
    envvar="TRUNKLINE_API_KEY",
    default=None,
    help="An API key (env TRUNKLINE_API_KEY); add, rm and preview need admin scope.",
)
@click.option(
    "--timeout",
    type=float,
    default=900.0,
    show_default=True,
    help="Seconds to wait for the server.",
)
@click.pass_context
def voices(ctx: click.Context, url: str, api_key: str | None, timeout: float) -> None:
    """Manage cloned voices."""
    ctx.obj = {"url": url, "api_key": api_key, "timeout": timeout}


@voices.command("add")
@click.argument("voice_id")
@click.argument("audio", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", default=None, help="Display name (default: the id).")
@click.pass_context
def add(ctx: click.Context, voice_id: str, audio: Path, name: str | None) -> None:
    """Clone VOICE_ID from AUDIO (wav, flac or mp3; 5-60 s of clear speech, <= 10 MB)."""
    data = {"voice_id": voice_id} | ({"name": name} if name else {})
    click.echo(f"cloning {voice_id!r} from {audio} (this can take minutes on a CPU)...", err=True)
    with audio.open("rb") as f:
        response = _request(ctx, "POST", "/voices", data=data, files={"file": (audio.name, f)})
    voice = response.json()
    click.echo(f"added {voice['id']} ({voice['name']}, {voice['engine']})")


@voices.command("list")
@click.pass_context
def list_(ctx: click.Context) -> None:
    """List cloned voices."""
    items: list[dict[str, Any]] = []
    offset = 0
    while True:  # bounded by the server's total
        page = _request(ctx, "GET", "/voices", params={"limit": 200, "offset": offset}).json()
        items += page["items"]
        offset += len(page["items"])
        if not page["items"] or offset >= page["total"]:
            break
    if not items:
        click.echo("no voices")
    for v in items:
        click.echo(f"{v['id']}\t{v['name']}\t{v['engine']}\t{v['created_at']}")


@voices.command("rm")
@click.argument("voice_id")
@click.pass_context
def rm(ctx: click.Context, voice_id: str) -> None:
    """Delete VOICE_ID and unload it from the TTS."""
    _request(ctx, "DELETE", f"/voices/{voice_id}")
    click.echo(f"removed {voice_id}")


@voices.command("preview")
@click.argument("voice_id")
@click.option("--text", default=None, help="What to say (default: a test phrase).")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="WAV file to write [VOICE_ID-preview.wav].",
)
@click.pass_context
def preview(ctx: click.Context, voice_id: str, text: str | None, output: Path | None) -> None:
    """Speak a test phrase in VOICE_ID and save it as a WAV file."""
    body = {"text": text} if text else None
    response = _request(ctx, "POST", f"/voices/{voice_id}/preview", json=body)
    output = output or Path(f"{voice_id}-preview.wav")
    output.write_bytes(response.content)
    click.echo(f"wrote {output} ({len(response.content)} bytes)")
