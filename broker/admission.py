"""Admission: whether a CONNECT gets in, and as whom. Plain functions on plain values.

The order of checks is chosen so that refusing is cheap and tells a stranger nothing:
the device must exist (two dict lookups) and be within its connect limit before any
digest is computed, and only a client that proves the secret learns that the device
is disabled or that its product has other rules.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from broker.credentials import CredentialCache
from broker.identity import AnonymousIdentity, AppIdentity, DeviceIdentity, Identity
from broker.protocol import (
    ClientIdError,
    alink_connect_params,
    alink_sign,
    codes,
    enos_connect_params,
    enos_sign,
    parse_enos_client_id,
    sign_matches,
    split_username,
)
from broker.protocol.signs import SECURE_MODE_DEVICE_SECRET, SECURE_MODE_PRODUCT_SECRET
from certs import read_peer_certificate
from registry.ids import secret_matches

# The Alink code for an EnOS one, where Alink has its own (protocol.md, section 7).
ALINK_CODES = {codes.DEVICE_NOT_FOUND: 6100, codes.DEVICE_DISABLED: 6204}


@dataclass(frozen=True, slots=True)
class ConnectAttempt:
    client_id: str
    username: str | None
    password: str | None
    tls: bool = False
    peer_cert: bytes | None = None  # the TLS client certificate (DER), verified by our CA


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a CONNECT was refused: a short reason, the platform's code where it has one."""

    reason: str
    message: str
    code: int | None = None
    product_key: str = ""
    device_key: str = ""

    def __str__(self) -> str:
        who = f"{self.product_key}/{self.device_key}: " if self.device_key else ""
        code = f" ({self.code})" if self.code is not None else ""
        return f"{who}{self.message}{code}"


@dataclass(frozen=True, slots=True)
class ConnectLimit:
    """Per-device CONNECT limits; EnOS's published defaults (protocol.md, section 8).

    A CONNECT less than `interval` seconds after the previous one is refused; one more
    than `burst` within `window` seconds is refused and blocks the device for `block`
    seconds. Refused attempts count. `burst=0` turns the limit off.
    """

    interval: float = 1.0
    burst: int = 4
    window: float = 120.0
    block: float = 300.0

    @classmethod
    def parse(cls, text: str) -> ConnectLimit:
        """`off`, or `BURST/WINDOW:BLOCK` in seconds, e.g. `4/120:300` (interval stays 1 s)."""
        if text.strip().lower() == "off":
            return cls(interval=0.0, burst=0)
        try:
            counts, _, block = text.partition(":")
            burst, _, window = counts.partition("/")
            limit = cls(burst=int(burst), window=float(window), block=float(block or 300))
        except ValueError:
            raise ValueError(
                f"{text!r} is not BURST/WINDOW:BLOCK, e.g. 4/120:300, or off"
            ) from None
        if limit.burst < 1 or limit.window <= 0 or limit.block < 0:
            raise ValueError(f"{text!r}: burst must be 1 or more and the window above 0")
        return limit

    @property
    def enabled(self) -> bool:
        return self.burst > 0


class ConnectLimiter:
    """Remembers each known device's recent CONNECTs. Memory is bounded by the registry:
    unknown devices are refused before they reach it."""

    def __init__(self, limit: ConnectLimit) -> None:
        self.limit = limit
        self._recent: dict[tuple[str, str], list[float]] = {}
        self._blocked_until: dict[tuple[str, str], float] = {}

    def allow(self, key: tuple[str, str], now: float) -> float | None:
        """Record an attempt; None if allowed, else the seconds the device must wait."""
        limit = self.limit
        if not limit.enabled:
            return None
        until = self._blocked_until.get(key)
        if until is not None:
            if now < until:
                return until - now
            del self._blocked_until[key]
        # A short list per device (at most `burst` times): a deque costs ten times the
        # memory, and there is one of these for every device that ever connected.
        recent = [t for t in self._recent.get(key, ()) if t > now - limit.window]
        # A refused attempt counts too, so a client retrying in a tight loop ends up blocked.
        too_soon = bool(recent) and now - recent[-1] < limit.interval
        recent.append(now)
        if len(recent) > limit.burst:
            self._blocked_until[key] = now + limit.block
            self._recent.pop(key, None)
            return limit.block
        self._recent[key] = recent
        if too_soon:
            return limit.interval - (now - recent[-2])
        return None

    def forget(self, key: tuple[str, str]) -> None:
        self._recent.pop(key, None)
        self._blocked_until.pop(key, None)


def admit(
    attempt: ConnectAttempt,
    cache: CredentialCache,
    limiter: ConnectLimiter,
    now: float,
    *,
    allow_anonymous: bool = False,
) -> Identity | Refusal:
    username = attempt.username
    if username is None:
        if allow_anonymous:
            return AnonymousIdentity(attempt.client_id)
        return Refusal("anonymous", "anonymous clients are not allowed (see --allow-anonymous)")
    keys = split_username(username)
    if keys is None:
        return _admit_app(attempt, username, cache)
    return _admit_device(attempt, keys[0], keys[1], cache, limiter, now)


def _admit_app(
    attempt: ConnectAttempt, access_key: str, cache: CredentialCache
) -> Identity | Refusal:
    app = cache.apps.get(access_key)
    if (
        app is None
        or attempt.password is None
        or not secret_matches(attempt.password, app.secret_hash)
    ):
        return Refusal(
            "application",
            "username is neither {deviceKey}&{productKey} nor a known access key with its secret",
        )
    return AppIdentity(app.org_id, attempt.client_id)


def _admit_device(
    attempt: ConnectAttempt,
    product_key: str,
    device_key: str,
    cache: CredentialCache,
    limiter: ConnectLimiter,
    now: float,
) -> Identity | Refusal:
    alink = "&" in attempt.client_id.partition("|")[0]

    def refuse(reason: str, message: str, code: int | None) -> Refusal:
        if alink and code is not None:
            code = ALINK_CODES.get(code, code)
        return Refusal(reason, message, code, product_key, device_key)

    product = cache.products.get(product_key)
    device = cache.devices.get((product_key, device_key))
    if product is None or device is None:
        return refuse("unknown-device", "the device does not exist", codes.DEVICE_NOT_FOUND)
    wait = limiter.allow((product_key, device_key), now)
    if wait is not None:
        return refuse(
            "rate-limited",
            f"too many CONNECTs; try again in {wait:.1f} s",
            codes.TOO_MANY_REQUESTS,
        )
    try:
        client = parse_enos_client_id(attempt.client_id)
    except ClientIdError as exc:
        return refuse("bad-client-id", str(exc), codes.SIGN_FAILED)
    settings = product.product.settings
    if alink:
        # linkkit: securemode 2 (TLS) or 3 (TCP), both signed with the device secret.
        if client.cid != f"{product_key}&{device_key}":
            return refuse("bad-client-id", "the client id names another device", codes.SIGN_FAILED)
        activating = False
        try:
            expected = alink_sign(
                device.secret,
                alink_connect_params(product_key, device_key, client.timestamp),
                client.sign_method,
            )
        except ClientIdError as exc:
            return refuse("bad-client-id", str(exc), codes.SIGN_FAILED)
    else:
        activating = client.secure_mode == SECURE_MODE_PRODUCT_SECRET
        if activating and not settings.dynamicActivateEnabled:
            # Dynamic activation: signed with the ProductSecret; the DeviceSecret is
            # pushed to the device once it is in (protocol.md, section 5).
            return refuse(
                "dynamic-activation",
                "dynamic activation (securemode=3) is not enabled for this product",
                codes.DYNAMIC_ACTIVATION_DENIED,
            )
        if not activating and client.secure_mode != SECURE_MODE_DEVICE_SECRET:
            return refuse(
                "bad-client-id",
                f"securemode {client.secure_mode} is not supported",
                codes.SIGN_FAILED,
            )
        secret = product.product.productSecret if activating else device.secret
        params = enos_connect_params(client.cid, product_key, device_key, client.timestamp)
        expected = enos_sign(secret, params, client.sign_method)
    if attempt.password is None or not sign_matches(expected, attempt.password):
        which = "product" if activating else "device"
        return refuse(
            "wrong-sign", f"the sign does not match the {which} secret", codes.SIGN_FAILED
        )
    if activating and device.activated:
        return refuse(
            "already-active",
            "the device is active already; it connects with its DeviceSecret (securemode=2)",
            codes.DYNAMIC_ACTIVATION_DENIED,
        )
    if not device.enabled:
        return refuse("disabled", "the device is disabled", codes.DEVICE_DISABLED)
    if settings.deviceType == "subdevice":
        return refuse(
            "sub-device",
            "a sub-device connects through its gateway, not directly",
            codes.SUB_DEVICE_DIRECT,
        )
    if settings.biDirectionalAuth and not attempt.tls:
        return refuse(
            "tls-required",
            "the product requires two-way TLS; connect to the TLS listener",
            codes.SSL_REQUIRED,
        )
    serial = None
    if attempt.peer_cert is not None:
        try:
            cert = read_peer_certificate(attempt.peer_cert)
        except ValueError:
            return refuse("bad-certificate", "the client certificate cannot be read", None)
        if (cert.product_key, cert.device_key) != (product_key, device_key):
            return refuse(
                "certificate-mismatch",
                f"the client certificate is issued to {cert.product_key}/{cert.device_key}",
                None,
            )
        if cert.serial in cache.revoked:
            return refuse("certificate-revoked", f"certificate {cert.serial} is revoked", None)
        if not cache.certificate_is_current(product_key, device_key, cert.serial):
            return refuse(
                "certificate-unknown",
                f"certificate {cert.serial} is not one of this device's certificates",
                None,
            )
        if cert.not_after <= time.time() * 1000:
            return refuse("certificate-expired", f"certificate {cert.serial} has expired", None)
        serial = cert.serial
    elif settings.biDirectionalAuth:
        return refuse(
            "certificate-required",
            "the product requires two-way TLS: present a client certificate from this CA",
            codes.SSL_REQUIRED,
        )
    if not device.activated and product.quota_left == 0:
        return refuse(
            "activation-quota",
            f"the product's activation quota ({settings.activationQuota}) is used up",
            None,
        )
    dialect = "alink" if alink else "enos"
    return DeviceIdentity(product_key, device_key, device.org_id, serial, activating, dialect)
