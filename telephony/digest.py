"""HTTP digest authentication for SIP (RFC 3261 22, RFC 2617 / 8760 MD5),
answering 401 WWW-Authenticate and 407 Proxy-Authenticate, with or without
qop=auth."""

from __future__ import annotations

import hashlib
import re
import secrets

_PARAM = re.compile(r'([\w-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]+)')


class DigestError(ValueError):
    """A challenge we cannot answer."""


def parse_challenge(value: str) -> dict[str, str]:
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        raise DigestError(f"unsupported auth scheme {scheme!r}")
    params = {k.lower(): v.strip('"') for k, v in _PARAM.findall(rest)}
    if "nonce" not in params or "realm" not in params:
        raise DigestError("digest challenge without realm or nonce")
    algorithm = params.get("algorithm", "MD5").upper()
    if algorithm != "MD5":
        raise DigestError(f"unsupported digest algorithm {algorithm}")
    return params


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()  # MD5: what SIP digest mandates


def authorization(
    challenge: dict[str, str],
    *,
    method: str,
    uri: str,
    username: str,
    password: str,
    nonce_count: int = 1,
) -> str:
    """The Authorization / Proxy-Authorization value answering `challenge`."""
    realm, nonce = challenge["realm"], challenge["nonce"]
    ha1 = _md5(f"{username}:{realm}:{password}")
    ha2 = _md5(f"{method}:{uri}")
    qops = [q.strip() for q in challenge.get("qop", "").split(",") if q.strip()]
    fields = [
        f'username="{username}"',
        f'realm="{realm}"',
        f'nonce="{nonce}"',
        f'uri="{uri}"',
        "algorithm=MD5",
    ]
    if "auth" in qops:
        cnonce = secrets.token_hex(8)
        nc = f"{nonce_count:08x}"
        response = _md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
        fields += ["qop=auth", f"nc={nc}", f'cnonce="{cnonce}"']
    elif qops:
        raise DigestError(f"unsupported qop {challenge['qop']!r}")
    else:
        response = _md5(f"{ha1}:{nonce}:{ha2}")
    fields.append(f'response="{response}"')
    if "opaque" in challenge:
        fields.append(f'opaque="{challenge["opaque"]}"')
    return "Digest " + ", ".join(fields)
