"""API keys: minted once, stored as scrypt hashes, looked up by their public prefix.

A key reads `tk_<prefix>_<secret>`. The prefix (12 hex digits) finds the row; the
whole key is checked against the row's scrypt hash in constant time. The key
itself is never stored or logged: `create_key` returns it once, to be shown once.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from agent.controlplane.errors import InvalidApiKey, InvalidField, NotFound
from agent.controlplane.models import API_KEY_SCOPES, ApiKey

KEY_PATTERN = re.compile(r"^tk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
# scrypt cost: ~16 MiB and tens of ms per check; keys are random, so this is plenty.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
# last_used_at is a hint for operators, not an audit log: write it at most this often.
_LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class KeyInfo:
    id: int
    name: str
    scope: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class NewKey:
    info: KeyInfo
    key: str  # the secret: shown to the operator once, never stored


def _info(row: ApiKey) -> KeyInfo:
    return KeyInfo(
        id=row.id,
        name=row.name,
        scope=row.scope,
        prefix=row.prefix,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


def hash_key(key: str, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(key.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${salt.hex()}${digest.hex()}"


def _verify_hash(key: str, stored: str) -> bool:
    try:
        algo, n, r, p, salt_hex, digest_hex = stored.split("$")
        if algo != "scrypt":
            return False
        digest = hashlib.scrypt(
            key.encode(), salt=bytes.fromhex(salt_hex), n=int(n), r=int(r), p=int(p)
        )
    except ValueError:
        return False
    return hmac.compare_digest(digest.hex(), digest_hex)


class _VerifiedCache:
    """Remembers (stored hash, sha256 of presented key) pairs that verified.

    scrypt on every request would cost each API call tens of ms of CPU; the row is
    still read each time, so revocation takes effect at once.
    """

    def __init__(self, size: int = 1024) -> None:
        self._size = size
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()

    async def check(self, key: str, stored: str) -> bool:
        token = (stored, hashlib.sha256(key.encode()).hexdigest())
        if token in self._seen:
            self._seen.move_to_end(token)
            return True
        # scrypt is CPU-bound for tens of ms: off the event loop, which may be pacing calls.
        if not await asyncio.to_thread(_verify_hash, key, stored):
            return False
        self._seen[token] = None
        if len(self._seen) > self._size:
            self._seen.popitem(last=False)
        return True


_verified = _VerifiedCache()


def _check_scope(scope: str) -> str:
    if scope not in API_KEY_SCOPES:
        raise InvalidField("scope", f"scope must be one of {API_KEY_SCOPES}, got {scope!r}")
    return scope


async def create_key(session: AsyncSession, *, scope: str, name: str = "") -> NewKey:
    _check_scope(scope)
    prefix = secrets.token_hex(6)
    key = f"tk_{prefix}_{secrets.token_urlsafe(32)}"
    key_hash = await asyncio.to_thread(hash_key, key)
    row = ApiKey(name=name, scope=scope, prefix=prefix, key_hash=key_hash)
    session.add(row)
    await session.flush()
    return NewKey(info=_info(row), key=key)


async def list_keys(session: AsyncSession) -> list[KeyInfo]:
    rows = await session.scalars(select(ApiKey).order_by(ApiKey.id))
    return [_info(r) for r in rows]


async def revoke_key(session: AsyncSession, id_or_prefix: str) -> KeyInfo:
    """Revoke by numeric id or by prefix; revoking twice keeps the first time."""
    if id_or_prefix.isdigit() and len(id_or_prefix) < 10:
        row = await session.get(ApiKey, int(id_or_prefix))
    else:
        row = await session.scalar(select(ApiKey).where(ApiKey.prefix == id_or_prefix))
    if row is None:
        raise NotFound(f"no API key with id or prefix {id_or_prefix!r}")
    if row.revoked_at is None:
        row.revoked_at = datetime.now(UTC)
    await session.flush()
    return _info(row)


async def authenticate(session: AsyncSession, key: str) -> KeyInfo:
    """The key's row if `key` is a live key; InvalidApiKey otherwise."""
    match = KEY_PATTERN.match(key)
    if match is None:
        raise InvalidApiKey("malformed API key")
    row = await session.scalar(select(ApiKey).where(ApiKey.prefix == match.group(1)))
    if row is None or not await _verified.check(key, row.key_hash):
        raise InvalidApiKey("unknown API key")
    if row.revoked_at is not None:
        raise InvalidApiKey("API key revoked")
    now = datetime.now(UTC)
    if row.last_used_at is None or now - row.last_used_at > _LAST_USED_RESOLUTION:
        row.last_used_at = now
    return _info(row)
