"""`trunkline dial --ticket T1`: have the agent call a store about a ticket.

    trunkline dial --ticket T1 [--server http://127.0.0.1:8001] [--api-key KEY] [--wait] [--json]

Posts the ticket to the running agent (`POST /api/calls`, admin key from --api-key,
$TRUNKLINE_API_KEY, or the local $TRUNKLINE_HOME/cli.key that `trunkline serve` keeps);
with --wait follows the call (GET /api/calls/{call_id}) until it ended and prints its
outcome, the workflow's summary and the transcript.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import click
import httpx

from agent.app.call_report import find_api
from agent.controlplane.local_key import API_KEY_ENV, cli_api_key

POLL_S = 1.0


def _fail(response: httpx.Response) -> click.ClickException:
    try:
        body = response.json()
        message = (body.get("error") or {}).get("message") or body.get("detail") or body
    except ValueError:
        message = response.text[:300]
    return click.ClickException(f"HTTP {response.status_code}: {message}")


def _ended(view: dict[str, Any]) -> bool:
    return not view.get("live") and view.get("outcome") not in (None, "in_progress")


def format_call(view: dict[str, Any]) -> str:
    lines = [f"call {view.get('call_id')}: {view.get('outcome')} ({view.get('end_reason')})"]
    workflow = view.get("workflow") or {}
    if workflow:
        lines.append(
            f"workflow {workflow.get('name')}: {workflow.get('outcome') or 'not finished'}; "
            f"ticket {workflow.get('ticket_id')} "
            f"{'updated' if workflow.get('ticket_updated') else 'NOT updated'}"
        )
        if workflow.get("summary"):
            lines.append(f"  {workflow['summary']}")
    for entry in view.get("transcript") or []:
        who = "Maya " if entry.get("speaker") == "agent" else "store"
        cut = " [interrupted]" if entry.get("interrupted") else ""
        lines.append(f"  {who}: {entry.get('text')}{cut}")
    return "\n".join(lines)


@click.command()
@click.option("--ticket", "ticket_id", required=True, help="Ticket id (e.g. T1).")
@click.option(
    "--server",
    default=None,
    help="The agent's API base URL [the first of http://127.0.0.1:8000 and :8001 that answers].",
)
@click.option("--api-key", default=None, help=f"Admin API key [env {API_KEY_ENV}].")
@click.option("--wait", is_flag=True, help="Follow the call until it ends; print the outcome.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(1, 7200),
    default=1800.0,
    show_default=True,
    help="With --wait: longest wait for the call to end (seconds).",
)
def dial(
    ticket_id: str,
    server: str | None,
    api_key: str | None,
    wait: bool,
    as_json: bool,
    timeout_s: float,
) -> None:
    """Have the agent call the store of a ticket and work it (outbound call)."""
    if server is None:  # --no-ray serves the agent on 8000, Ray on 8001
        found = asyncio.run(find_api("127.0.0.1", None))
        if found is None:
            raise click.ClickException(
                "no agent API answers on 127.0.0.1:8000 or :8001: is `trunkline serve` running?"
            )
        server = found
    key = cli_api_key(api_key) or ""  # --api-key, $TRUNKLINE_API_KEY, else the local cli.key
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    # The POST returns once the store answered: allow for the ring time.
    with httpx.Client(base_url=server.rstrip("/"), headers=headers, timeout=60.0) as http:
        try:
            response = http.post("/api/calls", json={"ticket_id": ticket_id})
        except httpx.HTTPError as exc:
            raise click.ClickException(f"cannot reach the agent at {server}: {exc}") from None
        if response.status_code != 202:
            raise _fail(response)
        placed = response.json()
        if not wait:
            if as_json:
                click.echo(json.dumps(placed, indent=2))
            else:
                click.echo(
                    f"calling {placed['to']} about ticket {placed['ticket_id']} "
                    f"({placed['workflow']}): call {placed['call_id']}"
                )
            return
        if not as_json:
            click.echo(f"calling {placed['to']} ({placed['workflow']}), call {placed['call_id']}")
        view = _follow(http, placed["call_id"], timeout_s)
    click.echo(json.dumps(view, indent=2) if as_json else format_call(view))
    if (view.get("workflow") or {}).get("outcome") is None:
        raise SystemExit(1)  # the workflow did not finish: the ticket says why


def _follow(http: httpx.Client, call_id: str, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    view: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            response = http.get(f"/api/calls/{call_id}")
        except httpx.HTTPError as exc:
            raise click.ClickException(f"lost the agent while following the call: {exc}") from None
        if response.status_code == 200:
            view = response.json()
            if _ended(view):
                return view
        elif response.status_code != 404:  # 404: between live and saved for a moment
            raise _fail(response)
        time.sleep(POLL_S)
    raise click.ClickException(f"call {call_id} had not ended after {timeout_s:g} s")
