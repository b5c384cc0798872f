"""Bearer tokens: from the environment or the database, kept only as hashes.

- ``LIQMON_API_TOKENS``: comma-separated tokens (a secret, so an environment variable
  with single underscores, never a settings key). They are hashed when read; the plain
  text is not kept.
- The database (``api_tokens`` table, when storage exists): only the SHA-256 of each token
  is stored. A token is long and random (:func:`new_token`), so a fast hash is enough:
  there is nothing to brute-force that a slow hash would protect.

Comparison is by hash, in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping

TOKENS_ENV = "LIQMON_API_TOKENS"
TOKEN_PREFIX = "lqm_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh token: 32 random bytes, URL-safe, with a recognisable prefix."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def env_token_hashes(env: Mapping[str, str] | None = None) -> frozenset[str]:
    env = os.environ if env is None else env
    raw = env.get(TOKENS_ENV, "")
    return frozenset(hash_token(t.strip()) for t in raw.split(",") if t.strip())


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


DbLookup = Callable[[str], Awaitable[bool]]


class TokenCheck:
    """Is a presented token one of ours? Environment hashes first, then the database."""

    def __init__(self, hashes: Iterable[str] = (), db_lookup: DbLookup | None = None) -> None:
        self.hashes = frozenset(hashes)
        self.db_lookup = db_lookup

    async def valid(self, token: str | None) -> bool:
        if not token:
            return False
        digest = hash_token(token)
        if any(hmac.compare_digest(digest, h) for h in self.hashes):
            return True
        if self.db_lookup is not None:
            return await self.db_lookup(digest)
        return False
