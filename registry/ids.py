"""Random identifiers and secrets, from the operating system's CSPRNG."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
import time

ALPHANUMERIC = string.ascii_letters + string.digits


def random_token(length: int) -> str:
    """Letters and digits only: safe in URLs, MQTT client ids and usernames."""
    return "".join(secrets.choice(ALPHANUMERIC) for _ in range(length))


def product_key() -> str:
    return random_token(10)


def product_secret() -> str:
    return random_token(16)


def device_key() -> str:
    return random_token(12)


def device_secret() -> str:
    return random_token(24)


def asset_id() -> str:
    return random_token(10)


def access_key() -> str:
    return random_token(20)


def access_secret() -> str:
    return random_token(32)


def org_id() -> str:
    return "o" + random_token(15)


def hash_secret(secret: str) -> str:
    # Access secrets are random and long, so a plain hash is enough to keep them off disk.
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, digest: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), digest)


def now_ms() -> int:
    return int(time.time() * 1000)
