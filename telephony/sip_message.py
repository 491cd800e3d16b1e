"""SIP messages (RFC 3261): a tolerant parser and a builder.

Tolerant where peers legitimately vary (compact and lower-case header names,
no space after the colon, empty headers, folded lines, LF-only line ends,
repeated and comma-joined headers); strict where a message is unusable
(no start line, missing mandatory headers, body shorter than Content-Length),
which raises SipParseError so the endpoint can answer 400 or drop it.
"""

from __future__ import annotations

import functools
import re
import warnings
from dataclasses import dataclass, field

SIP_VERSION = "SIP/2.0"

COMPACT_NAMES = {
    "a": "Accept-Contact", "b": "Referred-By", "c": "Content-Type", "d": "Request-Disposition",
    "e": "Content-Encoding", "f": "From", "i": "Call-ID", "j": "Reject-Contact",
    "k": "Supported", "l": "Content-Length", "m": "Contact", "n": "Identity-Info",
    "o": "Event", "r": "Refer-To", "s": "Subject", "t": "To", "u": "Allow-Events",
    "v": "Via", "x": "Session-Expires", "y": "Identity",
}  # fmt: skip
# Canonical spelling for names whose title-case is not the usual one.
_SPECIAL_CASE = {
    "call-id": "Call-ID", "cseq": "CSeq", "www-authenticate": "WWW-Authenticate",
    "mime-version": "MIME-Version", "rack": "RAck", "rseq": "RSeq",
}  # fmt: skip
# Headers that may carry several comma-separated values in one line.
_LIST_HEADERS = {"Via", "Route", "Record-Route", "Contact"}
MANDATORY = ("Via", "From", "To", "Call-ID", "CSeq")

_REQUEST_LINE = re.compile(r"^([A-Za-z]+) (\S+) SIP/2\.0$")
_STATUS_LINE = re.compile(r"^SIP/2\.0 (\d{3})(?: (.*))?$")
_TAG = re.compile(r";\s*tag=([^;>\s,]+)", re.IGNORECASE)
_URI_IN_BRACKETS = re.compile(r"<([^>]*)>")
_PARAM = re.compile(r";\s*([\w.!%*+`'~-]+)(?:=([^;,\s]+))?")


class SipParseError(ValueError):
    """The datagram is not a usable SIP message."""


def canonical_name(name: str) -> str:
    lower = name.strip().lower()
    if len(lower) == 1 and lower in COMPACT_NAMES:
        return COMPACT_NAMES[lower]
    if lower in _SPECIAL_CASE:
        return _SPECIAL_CASE[lower]
    return "-".join(part.capitalize() for part in lower.split("-"))


def split_commas(value: str) -> list[str]:
    """Split a header value on commas outside quotes and angle brackets."""
    parts, depth, quoted, start = [], 0, False, 0
    for i, ch in enumerate(value):
        if ch == '"' and (i == 0 or value[i - 1] != "\\"):
            quoted = not quoted
        elif not quoted and ch == "<":
            depth += 1
        elif not quoted and ch == ">":
            depth = max(0, depth - 1)
        elif not quoted and depth == 0 and ch == ",":
            parts.append(value[start:i].strip())
            start = i + 1
    parts.append(value[start:].strip())
    return [p for p in parts if p]


@dataclass
class SipMessage:
    method: str | None = None  # requests
    uri: str | None = None
    status: int | None = None  # responses
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @property
    def is_request(self) -> bool:
        return self.method is not None

    def get(self, name: str, default: str | None = None) -> str | None:
        name = canonical_name(name)
        for key, value in self.headers:
            if key == name:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        name = canonical_name(name)
        return [value for key, value in self.headers if key == name]

    def set(self, name: str, value: str) -> None:
        name = canonical_name(name)
        self.headers = [(k, v) for k, v in self.headers if k != name]
        self.headers.append((name, value))

    def add(self, name: str, value: str) -> None:
        self.headers.append((canonical_name(name), value))

    def cseq(self) -> tuple[int, str]:
        value = self.get("CSeq") or ""
        parts = value.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise SipParseError(f"bad CSeq {value!r}")
        return int(parts[0]), parts[1].upper()

    @property
    def call_id(self) -> str:
        return self.get("Call-ID") or ""

    @property
    def from_tag(self) -> str | None:
        return header_tag(self.get("From") or "")

    @property
    def to_tag(self) -> str | None:
        return header_tag(self.get("To") or "")

    def top_via_params(self) -> dict[str, str | None]:
        via = self.get("Via") or ""
        return {k.lower(): v for k, v in _PARAM.findall(via)}

    @property
    def branch(self) -> str:
        return self.top_via_params().get("branch") or ""

    def build(self) -> bytes:
        if self.is_request:
            lines = [f"{self.method} {self.uri} {SIP_VERSION}"]
        else:
            lines = [f"{SIP_VERSION} {self.status} {self.reason}"]
        lines += [f"{k}: {v}" for k, v in self.headers if k != "Content-Length"]
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body


def header_tag(value: str) -> str | None:
    # the tag is a header parameter: after the closing bracket when there is one
    tail = value.rsplit(">", 1)[-1] if "<" in value else value
    match = _TAG.search(tail)
    return match.group(1) if match else None


def header_uri(value: str) -> str:
    """The URI in a From/To/Contact value, with or without angle brackets."""
    match = _URI_IN_BRACKETS.search(value)
    if match:
        return match.group(1).strip()
    return value.split(";", 1)[0].strip()


def parse_message(data: bytes) -> SipMessage:
    if b"\n\n" not in data and b"\r\n\r\n" not in data:
        raise SipParseError("no blank line after the headers")
    head, rest = _split_head(data)
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SipParseError("headers are not UTF-8") from exc
    lines = text.replace("\r\n", "\n").split("\n")
    while lines and not lines[0].strip():  # RFC 3261 7.5: ignore leading blank lines
        lines.pop(0)
    if not lines:
        raise SipParseError("empty message")
    message = _parse_start_line(lines[0].strip())
    unfolded: list[str] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and unfolded:
            unfolded[-1] += " " + line.strip()
        elif line.strip():
            unfolded.append(line)
    for line in unfolded:
        name, colon, value = line.partition(":")
        if not colon or not name.strip() or " " in name.strip():
            raise SipParseError(f"bad header line {line[:60]!r}")
        name = canonical_name(name)
        value = value.strip()
        if name in _LIST_HEADERS and value != "*":
            for item in split_commas(value):
                message.headers.append((name, item))
        else:
            message.headers.append((name, value))
    missing = [h for h in MANDATORY if message.get(h) is None]
    if missing:
        raise SipParseError(f"missing {', '.join(missing)}")
    message.cseq()  # validates
    length = message.get("Content-Length")
    if length is not None:
        if not length.isdigit():
            raise SipParseError(f"bad Content-Length {length!r}")
        if int(length) > len(rest):
            raise SipParseError("body shorter than Content-Length (truncated datagram)")
        rest = rest[: int(length)]
    message.body = rest
    return message


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    crlf = data.find(b"\r\n\r\n")
    lf = data.find(b"\n\n")
    if crlf != -1 and (lf == -1 or crlf <= lf):
        return data[:crlf], data[crlf + 4 :]
    return data[:lf], data[lf + 2 :]


def _parse_start_line(line: str) -> SipMessage:
    match = _REQUEST_LINE.match(line)
    if match:
        return SipMessage(method=match.group(1).upper(), uri=match.group(2))
    match = _STATUS_LINE.match(line)
    if match:
        return SipMessage(status=int(match.group(1)), reason=match.group(2) or "")
    raise SipParseError(f"bad start line {line[:60]!r}")


@functools.cache
def reason_phrase(code: int) -> str:
    """Standard reason phrase, from pyVoIP's status table (the part of its SIP
    module that is right); a generic phrase for codes it lacks, or when pyVoIP
    cannot be imported (it imports `audioop`, gone in Python 3.13)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            # pyVoIP.VoIP first: its SIP module has a circular import otherwise
            import pyVoIP.VoIP  # noqa: F401
            from pyVoIP.SIP import SIPStatus

        return SIPStatus(code).phrase
    except Exception:
        return {1: "Progress", 2: "OK", 3: "Redirect", 4: "Client Error"}.get(
            code // 100, "Server Error"
        )
