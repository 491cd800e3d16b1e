"""The little SDP (RFC 4566 / 3264) an audio call needs: parse an offer or
answer, pick a codec, build ours."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from telephony.g711 import PCMA, PCMU

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
# what we answer to each direction the peer offers
ANSWER_DIRECTION = {
    "sendrecv": "sendrecv",
    "sendonly": "recvonly",
    "recvonly": "sendonly",
    "inactive": "inactive",
}
STATIC_NAMES = {PCMU: "PCMU", PCMA: "PCMA"}


class SdpError(ValueError):
    """No usable audio description."""


@dataclass
class SessionDescription:
    address: str
    port: int
    payload_types: list[int]
    rtpmap: dict[int, str] = field(default_factory=dict)  # pt -> "NAME/rate"
    direction: str = "sendrecv"

    def codec_names(self) -> dict[int, str]:
        names = {pt: STATIC_NAMES.get(pt, "") for pt in self.payload_types}
        for pt, spec in self.rtpmap.items():
            names[pt] = spec.split("/")[0].upper()
        return names

    def choose(self, preferred: tuple[int, ...] = (PCMU, PCMA)) -> tuple[int, int | None]:
        """(audio payload type, telephone-event payload type or None)."""
        names = self.codec_names()
        audio = next((pt for pt in self.payload_types if names.get(pt) in ("PCMU", "PCMA")), None)
        if audio is None or audio not in preferred:
            raise SdpError("no common codec: we speak PCMU and PCMA")
        audio = PCMU if names[audio] == "PCMU" else PCMA
        event = next((pt for pt in self.payload_types if names.get(pt) == "TELEPHONE-EVENT"), None)
        return audio, event


def parse_sdp(body: bytes) -> SessionDescription:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SdpError("SDP is not UTF-8") from exc
    session_address = media_address = None
    port = None
    payload_types: list[int] = []
    rtpmap: dict[int, str] = {}
    direction = "sendrecv"
    in_audio = False
    for raw in text.replace("\r\n", "\n").split("\n"):
        line = raw.strip()
        if len(line) < 2 or line[1] != "=":
            continue
        kind, value = line[0], line[2:]
        if kind == "m":
            parts = value.split()
            in_audio = parts[:1] == ["audio"] and port is None
            if in_audio:
                if len(parts) < 4 or not parts[1].split("/")[0].isdigit():
                    raise SdpError(f"bad media line {line!r}")
                port = int(parts[1].split("/")[0])
                payload_types = [int(p) for p in parts[3:] if p.isdigit()]
        elif kind == "c":
            parts = value.split()
            address = parts[2].split("/")[0] if len(parts) >= 3 else None
            if in_audio:
                media_address = address
            elif port is None:
                session_address = address
        elif kind == "a" and (in_audio or port is None):
            name, _, attr = value.partition(":")
            if name == "rtpmap" and in_audio:
                pt, _, spec = attr.partition(" ")
                if pt.isdigit():  # rtpmaps for types not in m= are harmless: kept, unused
                    rtpmap[int(pt)] = spec.strip()
            elif name in DIRECTIONS:
                direction = name
    if port is None:
        raise SdpError("no audio media line")
    address = media_address or session_address
    if not address:
        raise SdpError("no connection address")
    if address == "0.0.0.0":  # RFC 2543 hold
        direction = "inactive"
    return SessionDescription(address, port, payload_types, rtpmap, direction)


def build_sdp(
    address: str,
    port: int,
    payload_types: list[int],
    *,
    event_payload_type: int | None = 101,
    direction: str = "sendrecv",
    session_id: int | None = None,
    version: int = 1,
) -> bytes:
    session_id = session_id or int(time.time())
    pts = list(payload_types) + ([event_payload_type] if event_payload_type is not None else [])
    lines = [
        "v=0",
        f"o=trunkline {session_id} {version} IN IP4 {address}",
        "s=trunkline",
        f"c=IN IP4 {address}",
        "t=0 0",
        f"m=audio {port} RTP/AVP {' '.join(str(pt) for pt in pts)}",
    ]
    lines += [f"a=rtpmap:{pt} {STATIC_NAMES[pt]}/8000" for pt in payload_types]
    if event_payload_type is not None:
        lines += [
            f"a=rtpmap:{event_payload_type} telephone-event/8000",
            f"a=fmtp:{event_payload_type} 0-16",
        ]
    lines += ["a=ptime:20", f"a={direction}"]
    return ("\r\n".join(lines) + "\r\n").encode()
