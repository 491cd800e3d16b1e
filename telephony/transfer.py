"""Blind call transfer pieces: REFER targets (RFC 3515), sipfrag progress bodies
(RFC 3420) and the transferor's view of the implicit refer subscription.

The endpoint (sip_endpoint.py) sends and answers the messages; this module only
checks and builds what goes in them, so a hostile Refer-To can never become a
header injection or a dial to a non-SIP scheme.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field

from telephony.interface import CallFailed, EndReason

SIPFRAG_TYPE = "message/sipfrag;version=2.0"
# a SIP URI with nothing that could break out of a header (spaces, quotes,
# brackets, commas, line ends); headers after "?" are handled separately
_SIP_URI = re.compile(r"^sips?:[^\s<>\"',?]+$", re.IGNORECASE)
_SIPFRAG_STATUS = re.compile(r"^SIP/2\.0 (\d{3})(?: ([^\r\n]*))?$")
_FAILURE_CODES = {
    EndReason.NO_ANSWER: 408,
    EndReason.BUSY: 486,
    EndReason.REJECTED: 603,
    EndReason.CANCELLED: 487,
}


class TransferError(ValueError):
    """A REFER we cannot act on; `code` is the SIP answer to give."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code} {reason}")
        self.code = code
        self.reason = reason


def check_target(uri: str) -> str:
    """The transfer target as given to `Call.transfer`: a plain sip:/sips: URI."""
    value = uri.strip()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1].strip()
    if not _SIP_URI.match(value):
        raise ValueError(f"transfer target must be a sip: or sips: URI, not {uri!r}")
    return value


def parse_refer_to(values: list[str]) -> str:
    """The one URI a REFER asks us to call, or TransferError with the SIP answer."""
    if len(values) != 1:
        raise TransferError(400, "Bad Request - exactly one Refer-To needed")
    value = values[0].strip()
    match = re.match(r"^(?:\"[^\"]*\"\s*|[^<\"]*)?<([^>]*)>", value)
    uri = match.group(1).strip() if match else value.split(";", 1)[0].strip()
    if not uri:
        raise TransferError(400, "Bad Request - empty Refer-To")
    scheme = uri.split(":", 1)[0].lower() if ":" in uri else ""
    if scheme not in ("sip", "sips"):
        raise TransferError(416, "Unsupported URI Scheme")
    uri, _, embedded = uri.partition("?")
    if "replaces=" in embedded.lower():  # attended transfer (RFC 3891)
        raise TransferError(501, "Not Implemented - attended transfer (Replaces)")
    try:
        return check_target(uri)  # other embedded headers are not ours to send
    except ValueError as exc:
        raise TransferError(400, "Bad Request - malformed Refer-To URI") from exc


def sipfrag(code: int, reason: str) -> bytes:
    return f"SIP/2.0 {code} {reason}\r\n".encode()


def parse_sipfrag(body: bytes) -> int | None:
    """The status code in a sipfrag body's first line; None when it has none."""
    try:
        first = body.decode("utf-8").replace("\r\n", "\n").split("\n", 1)[0].strip()
    except UnicodeDecodeError:
        return None
    match = _SIPFRAG_STATUS.match(first)
    return int(match.group(1)) if match else None


def failure_status(exc: CallFailed) -> tuple[int, str]:
    """The SIP status to report in a sipfrag for a call to the target that failed."""
    match = re.match(r"^(\d{3}) ?(.*)$", exc.detail)
    if match and 300 <= int(match.group(1)) < 700:
        return int(match.group(1)), match.group(2) or "Failed"
    code = _FAILURE_CODES.get(exc.reason, 503)
    return code, exc.reason.value.replace("_", " ").title()


@dataclass
class ReferWatch:
    """The transferor's side of one REFER: what the transferee has told us."""

    event_id: str
    refer_status: int | None = None  # the final answer to the REFER (408: none came)
    statuses: list[int] = field(default_factory=list)  # every sipfrag status, in order
    final: int | None = None  # the final status (>= 200), or 0: ended without one
    peer_left: bool = False  # the transferee sent BYE while we waited
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def on_notify(self, status: int | None, terminated: bool) -> None:
        if status is not None:
            self.statuses.append(status)
            if status >= 200 and self.final is None:
                self.final = status
        if terminated and self.final is None:
            self.final = 0
        self.changed.set()

    def on_refer_answer(self, status: int) -> None:
        self.refer_status = status
        self.changed.set()

    @property
    def refused(self) -> bool:
        return self.refer_status is not None and self.refer_status >= 300

    @property
    def succeeded(self) -> bool:
        return self.final is not None and 200 <= self.final < 300
