"""CONNECT credentials as the EnOS device SDK builds them (docs/protocol.md, section 1).

The EnOS "sign" is a plain digest, not an HMAC: the sorted `key+value` pairs with the
secret appended, hashed with the method the client id names, in hex.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

# EnOS labels: the SDK says `hmacsha256` and the docs `sha256`, both meaning plain
# SHA-256; `hmacsha1` is plain SHA-1 (the SDK sends it upper case); `hmacmd5` is MD5.
SIGN_METHODS: Mapping[str, Callable[[bytes], hashlib._Hash]] = {
    "sha256": hashlib.sha256,
    "hmacsha256": hashlib.sha256,
    "sha1": hashlib.sha1,
    "hmacsha1": hashlib.sha1,
    "md5": hashlib.md5,
    "hmacmd5": hashlib.md5,
}
DEFAULT_SIGN_METHOD = "hmacsha256"
SECURE_MODE_DEVICE_SECRET = 2
SECURE_MODE_PRODUCT_SECRET = 3
MAX_CLIENT_ID = 256  # longer client ids are refused before any parsing

# A sign's timestamp: milliseconds since 1970 as the EnOS SDK sends it (`str(time.time()
# * 1000)`, a fraction included), or seconds as linkkit's CONNECT and the EnOS SDK's
# batch login send it (`str(int(time.time()))`, `str(time.time())`). ASCII digits only.
TIMESTAMP = re.compile(r"[0-9]{1,17}(?:\.[0-9]{1,9})?")
SECONDS_BELOW = 1e11  # a smaller value is seconds: 1e11 ms is 1973, 1e11 s the year 5138
MAX_CLOCK_AHEAD = 86_400.0  # seconds a timestamp may be ahead of the server without a window


class ClientIdError(ValueError):
    """The client id is not in the `{id}|key=value,...|` shape, or names an unknown method."""


@dataclass(frozen=True, slots=True)
class EnosClientId:
    """The parts of an EnOS client id: `{cid}|securemode=2,signmethod=...,timestamp=...|`."""

    cid: str
    secure_mode: int
    sign_method: str
    timestamp: str
    timestamp_ms: float = 0.0  # the timestamp read as milliseconds since 1970


def timestamp_ms(timestamp: str) -> float:
    """A sign's timestamp as milliseconds since 1970; ClientIdError if it is no number."""
    if TIMESTAMP.fullmatch(timestamp) is None:
        raise ClientIdError(
            f"timestamp {timestamp[:32]!r} is not a number of milliseconds (or seconds) since 1970"
        )
    value = float(timestamp)
    return value * 1000 if value < SECONDS_BELOW else value


def timestamp_problem(stamp_ms: float, now_ms: float, max_age: float | None) -> str | None:
    """Why a sign's timestamp is refused at `now_ms`, or None. Without a window
    (`max_age` None) only a timestamp over a day ahead of the server's clock is."""
    ahead = (stamp_ms - now_ms) / 1000
    limit = MAX_CLOCK_AHEAD if max_age is None else max_age
    if ahead > limit:
        return (
            f"the sign's timestamp is {ahead:.0f} s ahead of the server's clock"
            f" (at most {limit:g} s)"
        )
    if max_age is not None and -ahead > max_age:
        return (
            f"the sign's timestamp is {-ahead:.0f} s old, over --sign-max-age ({max_age:g} s):"
            " sign each connection with the current time"
        )
    return None


def enos_sign(secret: str, params: Mapping[str, str], method: str = DEFAULT_SIGN_METHOD) -> str:
    """The sign the EnOS SDK sends: digest(sorted key+value pairs + secret), hex."""
    digest = SIGN_METHODS.get(method.lower())
    if digest is None:
        raise ClientIdError(f"unknown sign method {method!r}")
    content = "".join(key + str(params[key]) for key in sorted(params)) + secret
    return digest(content.encode()).hexdigest()


def enos_connect_params(
    cid: str, product_key: str, device_key: str, timestamp: str
) -> dict[str, str]:
    return {
        "clientId": cid,
        "deviceKey": device_key,
        "productKey": product_key,
        "timestamp": timestamp,
    }


def sign_matches(expected: str, given: str) -> bool:
    """Constant-time comparison, tolerant of hex in either case."""
    return hmac.compare_digest(expected.lower().encode(), given.lower().encode())


def parse_enos_client_id(client_id: str) -> EnosClientId:
    """Split an EnOS client id; the timestamp stays the string that was signed."""
    if len(client_id) > MAX_CLIENT_ID:
        raise ClientIdError(f"client id is longer than {MAX_CLIENT_ID} characters")
    cid, bar, rest = client_id.partition("|")
    if not bar or not rest.endswith("|") or not cid:
        raise ClientIdError(
            "client id must look like {id}|securemode=2,signmethod=...,timestamp=...|"
        )
    fields: dict[str, str] = {}
    for part in rest[:-1].split(","):
        key, eq, value = part.partition("=")
        if not eq:
            raise ClientIdError(f"client id field {part!r} is not key=value")
        fields[key.strip().lower()] = value.strip()
    try:
        secure_mode = int(fields.get("securemode", ""))
    except ValueError:
        raise ClientIdError("client id has no numeric securemode") from None
    method = fields.get("signmethod", "").lower()
    if method not in SIGN_METHODS:
        raise ClientIdError(f"unknown signmethod {fields.get('signmethod')!r}")
    timestamp = fields.get("timestamp", "")
    if not timestamp:
        raise ClientIdError("client id has no timestamp")
    return EnosClientId(cid, secure_mode, method, timestamp, timestamp_ms(timestamp))


def enos_client_id(
    device_key: str,
    timestamp: str,
    *,
    secure_mode: int = SECURE_MODE_DEVICE_SECRET,
    sign_method: str = DEFAULT_SIGN_METHOD,
) -> str:
    return f"{device_key}|securemode={secure_mode},signmethod={sign_method},timestamp={timestamp}|"


@dataclass(frozen=True, slots=True)
class EnosCredentials:
    """What an EnOS device sends in CONNECT."""

    client_id: str
    username: str
    password: str


def enos_credentials(
    product_key: str,
    device_key: str,
    secret: str,
    timestamp: str,
    *,
    secure_mode: int = SECURE_MODE_DEVICE_SECRET,
    sign_method: str = DEFAULT_SIGN_METHOD,
) -> EnosCredentials:
    """Sign a CONNECT as the EnOS SDK does (simulators and tests use this)."""
    params = enos_connect_params(device_key, product_key, device_key, timestamp)
    return EnosCredentials(
        client_id=enos_client_id(
            device_key, timestamp, secure_mode=secure_mode, sign_method=sign_method
        ),
        username=f"{device_key}&{product_key}",
        password=enos_sign(secret, params, sign_method),
    )


def split_username(username: str) -> tuple[str, str] | None:
    """`{dk}&{pk}` -> (product_key, device_key), or None if it is not that shape."""
    device_key, amp, product_key = username.partition("&")
    if not amp or not device_key or not product_key or "&" in product_key:
        return None
    return product_key, device_key


# Alink (Alibaba's linkkit SDK): an HMAC keyed by the device secret, over the sorted
# `key+value` pairs, with the device name where EnOS has the device key.
HMAC_METHODS: Mapping[str, str] = {"hmacsha1": "sha1", "hmacsha256": "sha256", "hmacmd5": "md5"}
DEFAULT_ALINK_METHOD = "hmacsha1"


def alink_connect_params(product_key: str, device_name: str, timestamp: str) -> dict[str, str]:
    return {
        "clientId": f"{product_key}&{device_name}",
        "deviceName": device_name,
        "productKey": product_key,
        "timestamp": timestamp,
    }


def alink_sign(secret: str, params: Mapping[str, str], method: str = DEFAULT_ALINK_METHOD) -> str:
    digest = HMAC_METHODS.get(method.lower())
    if digest is None:
        raise ClientIdError(f"unknown Alink sign method {method!r}")
    content = "".join(key + str(params[key]) for key in sorted(params))
    return hmac.new(secret.encode(), content.encode(), digest).hexdigest()


def alink_credentials(
    product_key: str,
    device_name: str,
    secret: str,
    timestamp: str,
    *,
    sign_method: str = DEFAULT_ALINK_METHOD,
) -> EnosCredentials:
    """Sign a CONNECT as linkkit does (securemode 3: TCP; the sign is the same over TLS)."""
    return EnosCredentials(
        client_id=(
            f"{product_key}&{device_name}|securemode=3,signmethod={sign_method},ext=1,_ss=1,"
            f"lan=Python,_v=1.2.13,timestamp={timestamp}|"
        ),
        username=f"{device_name}&{product_key}",
        password=alink_sign(
            secret, alink_connect_params(product_key, device_name, timestamp), sign_method
        ),
    )
