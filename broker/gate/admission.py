"""Admission: whether a CONNECT gets in, and as whom. Plain functions on plain values.

The order of checks is chosen so that refusing is cheap and tells a stranger nothing:
the device must exist (two dict lookups) and its sign-failure limit must not block the
source address before any digest is computed. Then the secret is proven: a correct sign,
a numeric timestamp within `--sign-max-age`, a sign not replayed (broker/gate/connect_guard.py
says what is counted where). Only a client that proves the secret is held to the connect
limit, and learns that the device is disabled or that its product has other rules.
"""

from __future__ import annotations

from collections.abc import Callable, Container
from dataclasses import dataclass
from datetime import UTC, datetime

from broker.clock import SYSTEM_CLOCK
from broker.gate.connect_guard import ConnectGuard, DeviceKey, Wait
from broker.gate.credentials import CredentialCache
from broker.gate.identity import AnonymousIdentity, AppIdentity, DeviceIdentity, Identity
from broker.protocol import ClientIdError, codes, parse_enos_client_id, sign_matches, split_username
from broker.protocol.dialects import ConnectSecrets, Dialect, SignProblem, dialect_of
from broker.protocol.signs import EnosClientId, timestamp_problem
from certs import read_peer_certificate
from registry.ids import secret_matches


@dataclass(frozen=True, slots=True)
class ConnectAttempt:
    client_id: str
    username: str | None
    password: str | None
    tls: bool = False
    peer_cert: bytes | None = None  # the TLS client certificate (DER), verified by our CA
    peer: str = ""  # the source address, which the sign-failure limit is counted by


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a CONNECT was refused: a short reason, the platform's code where it has one."""

    reason: str
    message: str
    code: int | None = None
    product_key: str = ""
    device_key: str = ""
    announce: bool = False  # it starts a block: logged whatever the log's throttle
    quiet: bool = False  # refused by a block already announced: not logged again

    def __str__(self) -> str:
        who = f"{self.product_key}/{self.device_key}: " if self.device_key else ""
        code = f" ({self.code})" if self.code is not None else ""
        return f"{who}{self.message}{code}"


# Refusals before the secret is proven that are not counted as failed signs: the
# device's own SDK resending its CONNECT while the broker still holds the old one.
NOT_FAILURES = frozenset({"sign-in-use"})


def admit(
    attempt: ConnectAttempt,
    cache: CredentialCache,
    guard: ConnectGuard,
    now: float,
    *,
    wall_ms: float | None = None,
    allow_anonymous: bool = False,
    online: Container[DeviceKey] = (),
) -> Identity | Refusal:
    """`now` is monotonic seconds (for the limits), `wall_ms` the clock that sign
    timestamps are read against; `online` holds the devices connected directly."""
    username = attempt.username
    if username is None:
        if allow_anonymous:
            return AnonymousIdentity(attempt.client_id)
        return Refusal("anonymous", "anonymous clients are not allowed (see --allow-anonymous)")
    keys = split_username(username)
    if keys is None:
        return _admit_app(attempt, username, cache)
    wall = SYSTEM_CLOCK.wall_ms() if wall_ms is None else wall_ms
    return _admit_device(attempt, keys[0], keys[1], cache, guard, now, wall, online)


def iso_time(wall_ms: float) -> str:
    """A wall-clock time for the log and the API, e.g. 2025-06-01T12:05:00Z."""
    return datetime.fromtimestamp(wall_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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


Refuse = Callable[..., Refusal]


def _prove(
    attempt: ConnectAttempt,
    key: DeviceKey,
    cache: CredentialCache,
    guard: ConnectGuard,
    wall_ms: float,
    online: Container[DeviceKey],
    dialect: Dialect,
    refuse: Refuse,
) -> bool | Refusal:
    """Whether the CONNECT proves the secret: whether it activates (signed with the
    ProductSecret), or why not. The dialect says what the sign must be."""
    product_key, device_key = key
    product = cache.products[product_key]
    device = cache.devices[key]
    try:
        client = parse_enos_client_id(attempt.client_id)
        secrets = ConnectSecrets(
            device.secret,
            product.product.productSecret,
            product.product.settings.dynamicActivateEnabled,
        )
        expected = dialect.connect_sign(client, product_key, device_key, secrets)
    except ClientIdError as exc:
        return refuse("bad-client-id", str(exc), codes.SIGN_FAILED)
    if isinstance(expected, SignProblem):
        return refuse(expected.reason, expected.message, expected.code)
    sign = attempt.password
    if sign is None or not sign_matches(expected.sign, sign):
        which = "product" if expected.activating else "device"
        return refuse(
            "wrong-sign", f"the sign does not match the {which} secret", codes.SIGN_FAILED
        )
    return _fresh(client, sign, key, guard, wall_ms, online, refuse) or expected.activating


def _fresh(
    client: EnosClientId,
    sign: str,
    key: DeviceKey,
    guard: ConnectGuard,
    wall_ms: float,
    online: Container[DeviceKey],
    refuse: Refuse,
) -> Refusal | None:
    """A correct sign that is stale, or a replay of one admitted before; None if new."""
    problem = timestamp_problem(client.timestamp_ms, wall_ms, guard.sign_max_age)
    if problem is not None:
        reason = "stale-sign" if client.timestamp_ms < wall_ms else "future-sign"
        return refuse(reason, problem, codes.SIGN_FAILED)
    if not guard.signs.used(key, sign):
        return None
    if guard.sign_max_age is not None:
        return refuse(
            "replayed-sign",
            "this sign was used before: with --sign-max-age every connection signs anew",
            codes.SIGN_FAILED,
        )
    if key in online:
        # Without a window the SDKs resend the CONNECT they built once, so a sign used
        # before is admitted, but it does not take the device's connection away.
        return refuse(
            "sign-in-use",
            "the device is online, connected with this very sign: a replayed CONNECT does"
            " not take over (a new connection signs with a new timestamp)",
            codes.SIGN_FAILED,
        )
    return None


def _admit_device(
    attempt: ConnectAttempt,
    product_key: str,
    device_key: str,
    cache: CredentialCache,
    guard: ConnectGuard,
    now: float,
    wall_ms: float,
    online: Container[DeviceKey],
) -> Identity | Refusal:
    dialect = dialect_of(attempt.client_id)  # chosen once: the connection's for good

    def refuse(reason: str, message: str, code: int | None, **flags: bool) -> Refusal:
        if code is not None:
            code = dialect.code(code)
        return Refusal(reason, message, code, product_key, device_key, **flags)

    def blocked(reason: str, message: str, wait: Wait) -> Refusal:
        until = iso_time(wall_ms + wait.seconds * 1000)
        return refuse(
            reason,
            f"{message}: refused until {until}",
            codes.TOO_MANY_REQUESTS,
            announce=wait.started,
            quiet=not wait.started,
        )

    key = (product_key, device_key)
    product = cache.products.get(product_key)
    device = cache.devices.get(key)
    if product is None or device is None:
        return refuse("unknown-device", "the device does not exist", codes.DEVICE_NOT_FOUND)
    failures = guard.failures
    failure_key = (product_key, device_key, attempt.peer)
    wait = failures.check(failure_key, now)
    if wait is not None:
        return blocked("sign-failures", f"wrong signs from {attempt.peer or 'its address'}", wait)
    proof = _prove(attempt, key, cache, guard, wall_ms, online, dialect, refuse)
    if isinstance(proof, Refusal):
        if proof.reason in NOT_FAILURES:
            return proof
        wait = failures.count(failure_key, now)
        if wait is not None:
            limit = failures.limit
            return blocked(
                "sign-failures",
                f"{limit.burst + 1} failed signs from {attempt.peer or 'one address'} within"
                f" {limit.window:g} s (the last: {proof.message})",
                wait,
            )
        return proof
    activating = proof
    settings = product.product.settings
    # The secret is proven: only now does the attempt count against the connect limit.
    wait = guard.connects.allow(key, now)
    if wait is not None and wait.blocked:
        limit = guard.connects.limit
        return blocked(
            "rate-limited", f"more than {limit.burst} CONNECTs within {limit.window:g} s", wait
        )
    if wait is not None:
        return refuse(
            "rate-limited",
            f"too many CONNECTs; try again in {wait.seconds:.1f} s",
            codes.TOO_MANY_REQUESTS,
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
        if cert.not_after <= wall_ms:
            return refuse("certificate-expired", f"certificate {cert.serial} has expired", None)
        serial = cert.serial
    elif settings.biDirectionalAuth:
        return refuse(
            "certificate-required",
            "the product requires two-way TLS: present a client certificate from this CA",
            codes.SSL_REQUIRED,
        )
    problem = cache.activation_refused(key, int(wall_ms))
    if problem is not None:
        return refuse(*problem, None)
    cache.codes.take(key, int(wall_ms))  # the code is the device's from now on
    guard.signs.record(key, attempt.password or "")
    return DeviceIdentity(product_key, device_key, device.org_id, serial, activating, dialect)
