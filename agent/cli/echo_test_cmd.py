"""`trunkline echo-test`: a SIP echo extension for checking a trunk or softphone."""

from __future__ import annotations

import asyncio
import logging

import click


def _host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise click.BadParameter(f"expected HOST:PORT, got {value!r}")
    return host, int(port)


def _port_range(value: str) -> tuple[int, int]:
    start, sep, end = value.partition("-")
    if not sep or not start.isdigit() or not end.isdigit() or int(start) >= int(end):
        raise click.BadParameter(f"expected START-END, got {value!r}")
    return int(start), int(end)


@click.command("echo-test")
@click.option("--bind", "bind", default="127.0.0.1:5060", show_default=True, help="SIP HOST:PORT")
@click.option("--rtp-ports", default="20000-30000", show_default=True, help="RTP port range")
@click.option(
    "--media-timeout", default=30.0, show_default=True, help="end calls after N s without RTP"
)
@click.option("-v", "--verbose", is_flag=True, help="log every call and digit")
def echo_test(bind: str, rtp_ports: str, media_timeout: float, verbose: bool) -> None:
    """Answer every call, echo the caller's audio, answer DTMF digits with tones."""
    from telephony.echo import answer_and_echo
    from telephony.sip_endpoint import SipConfig, SipEndpoint, SipError

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    config = SipConfig(
        bind=_host_port(bind), rtp_ports=_port_range(rtp_ports), media_timeout_s=media_timeout
    )

    async def run() -> None:
        endpoint = SipEndpoint(config)
        try:
            await endpoint.start(answer_and_echo)
        except SipError as exc:
            raise click.ClickException(str(exc)) from exc
        host, port = endpoint.local_address
        click.echo(f"echo-test listening on sip:echo@{host}:{port} (UDP); Ctrl-C to stop", err=True)
        try:
            await asyncio.Event().wait()
        finally:
            await endpoint.stop()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
