"""One SIP OPTIONS ping before dialling, so "nothing listens there" fails in a second.

SIP runs over UDP: an INVITE to a closed port just goes unanswered until the
transaction times out (32 s). A connected UDP socket does get the kernel's ICMP
"port unreachable" back, as ConnectionRefusedError, which makes the error clear.
"""

from __future__ import annotations

import asyncio
import secrets
import socket


class SipUnreachable(Exception):
    """Nothing accepts SIP at that address."""


def _options(host: str, port: int, local: tuple[str, int]) -> bytes:
    tag, branch, call_id = (secrets.token_hex(6) for _ in range(3))
    return (
        f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {local[0]}:{local[1]};branch=z9hG4bK{branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:probe@{local[0]}>;tag={tag}\r\n"
        f"To: <sip:{host}:{port}>\r\n"
        f"Call-ID: {call_id}@{local[0]}\r\n"
        "CSeq: 1 OPTIONS\r\nUser-Agent: trunkline-call\r\nContent-Length: 0\r\n\r\n"
    ).encode()


async def probe(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """True: something answered; False: no answer in time (it may still take an INVITE).
    Raises SipUnreachable when the port is closed (ICMP port unreachable)."""
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        try:
            sock.connect((host, port))
            sock.send(_options(host, port, sock.getsockname()[:2]))
            await asyncio.wait_for(loop.sock_recv(sock, 65535), timeout_s)
        except ConnectionRefusedError:
            raise SipUnreachable(
                f"connection refused: nothing listens for SIP on {host}:{port}"
            ) from None
        except TimeoutError:
            return False
        except OSError as exc:
            raise SipUnreachable(f"cannot reach {host}:{port}: {exc}") from None
    return True
