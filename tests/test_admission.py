"""Admission decisions as pure logic: every refusal reason, the connect limit, and the
credential cache following registry changes. The same decisions are exercised over
real MQTT in test_device_mqtt.py."""

from __future__ import annotations

from typing import Any

import pytest

from broker.cli.serve import parse_args
from broker.config import ConfigError
from broker.gate.admission import ConnectAttempt, Refusal, admit
from broker.gate.connect_guard import (
    SIGN_FAILURE_LIMIT,
    AttemptLimiter,
    ConnectGuard,
    ConnectLimit,
    Wait,
)
from broker.gate.credentials import CredentialCache
from broker.gate.identity import AnonymousIdentity, AppIdentity, DeviceIdentity
from broker.protocol import enos_credentials
from registry import Device, Organization, Product
from registry.ids import hash_secret
from registry.models import I18nString, ProductSettings

SECRET = "device-secret-1"
OFF = ConnectLimit(interval=0, burst=0)
NO_LIMIT = ConnectGuard(OFF, OFF)


def product(key: str = "pk1", **settings: Any) -> Product:
    return Product(
        orgId="org1",
        productKey=key,
        productSecret="product-secret",
        settings=ProductSettings(productName=key, modelId="m", **settings),
        createdAt=0,
    )


def device(key: str = "dk1", product_key: str = "pk1", **fields: Any) -> Device:
    values: dict[str, Any] = {
        "orgId": "org1",
        "productKey": product_key,
        "deviceKey": key,
        "deviceSecret": SECRET,
        "assetId": "a" + key,
        "deviceName": I18nString(defaultValue=key),
        "timezone": "+08:00",
        "deviceDesc": "",
        "deviceAttributes": {},
        "deviceTags": {},
        "enabled": True,
        "online": False,
        "activatedAt": None,
        "lastSeenAt": None,
        "createdAt": 0,
    }
    values.update(fields)
    return Device(**values)


def cache_with(*items: Product | Device) -> CredentialCache:
    cache = CredentialCache()
    for item in items:
        if isinstance(item, Product):
            cache.product_saved(item)
        else:
            cache.devices_saved([item])
    return cache


def signed(
    product_key: str = "pk1",
    device_key: str = "dk1",
    secret: str = SECRET,
    timestamp: str = "1795300635825.1592",
    **kw: Any,
) -> ConnectAttempt:
    creds = enos_credentials(product_key, device_key, secret, timestamp, **kw)
    return ConnectAttempt(creds.client_id, creds.username, creds.password)


def refusal(decision: object) -> str:
    assert isinstance(decision, Refusal), decision
    return decision.reason


def test_a_correctly_signed_device_is_admitted_as_itself() -> None:
    decision = admit(signed(), cache_with(product(), device()), NO_LIMIT, 0.0)
    assert decision == DeviceIdentity("pk1", "dk1", "org1")
    assert isinstance(decision, DeviceIdentity)
    assert decision.session_key == "device:pk1/dk1"


@pytest.mark.parametrize("method", ["hmacsha256", "sha256", "hmacsha1", "hmacmd5"])
def test_every_sign_method_label_is_accepted(method: str) -> None:
    decision = admit(signed(sign_method=method), cache_with(product(), device()), NO_LIMIT, 0)
    assert isinstance(decision, DeviceIdentity)


def test_upper_case_hex_is_accepted() -> None:
    attempt = signed()
    upper = ConnectAttempt(attempt.client_id, attempt.username, (attempt.password or "").upper())
    assert isinstance(admit(upper, cache_with(product(), device()), NO_LIMIT, 0), DeviceIdentity)


@pytest.mark.parametrize(
    ("attempt", "items", "reason", "code"),
    [
        (signed(secret="wrong-secret"), (product(), device()), "wrong-sign", 742),
        (signed(device_key="nobody"), (product(), device()), "unknown-device", 705),
        (signed(product_key="pkX"), (product(), device()), "unknown-device", 705),
        (signed(), (product(), device(enabled=False)), "disabled", 723),
        (signed(), (product(deviceType="subdevice"), device()), "sub-device", 771),
        (signed(), (product(biDirectionalAuth=True), device()), "tls-required", 746),
        (signed(secure_mode=3), (product(), device()), "dynamic-activation", 770),
        (signed(secure_mode=7), (product(), device()), "bad-client-id", 742),
        (
            ConnectAttempt("dk1", "dk1&pk1", "x"),  # not an EnOS client id
            (product(), device()),
            "bad-client-id",
            742,
        ),
        (ConnectAttempt("c", "dk1&pk1", None), (product(), device()), "bad-client-id", 742),
    ],
)
def test_refusals_name_the_reason_and_the_platform_code(
    attempt: ConnectAttempt, items: tuple[Product | Device, ...], reason: str, code: int
) -> None:
    decision = admit(attempt, cache_with(*items), NO_LIMIT, 0.0)
    assert refusal(decision) == reason
    assert isinstance(decision, Refusal) and decision.code == code


def test_a_disabled_device_is_only_revealed_to_a_client_that_knows_the_secret() -> None:
    cache = cache_with(product(), device(enabled=False))
    assert refusal(admit(signed(secret="guess-secret"), cache, NO_LIMIT, 0)) == "wrong-sign"


def test_the_activation_quota_admits_activated_devices_and_refuses_new_ones() -> None:
    cache = cache_with(
        product(activationQuota=1), device("dk1", activatedAt=5), device("dk2", activatedAt=None)
    )
    assert cache.products["pk1"].quota_left == 0
    assert isinstance(admit(signed(), cache, NO_LIMIT, 0), DeviceIdentity)
    assert refusal(admit(signed(device_key="dk2"), cache, NO_LIMIT, 0)) == "activation-quota"


def test_the_cache_follows_registry_changes() -> None:
    cache = cache_with(product(), device())
    cache.devices_saved([device(enabled=False)])
    assert refusal(admit(signed(), cache, NO_LIMIT, 0)) == "disabled"
    cache.devices_saved([device(deviceSecret="a-new-secret")])
    assert refusal(admit(signed(), cache, NO_LIMIT, 0)) == "wrong-sign"
    assert isinstance(admit(signed(secret="a-new-secret"), cache, NO_LIMIT, 0), DeviceIdentity)
    revoked: list[tuple[str, str]] = []
    cache.on_revoked = lambda pk, dk, deleted: revoked.append((pk, dk))
    cache.device_deleted("pk1", "dk1")
    assert refusal(admit(signed(secret="a-new-secret"), cache, NO_LIMIT, 0)) == "unknown-device"
    assert revoked == [("pk1", "dk1")]


def test_activation_is_counted_once_per_device() -> None:
    cache = cache_with(product(activationQuota=2), device("dk1"), device("dk2"))
    assert cache.mark_activated("pk1", "dk1") is True
    assert cache.mark_activated("pk1", "dk1") is False
    assert cache.products["pk1"].quota_left == 1


def test_applications_log_in_with_an_access_key() -> None:
    cache = CredentialCache()
    cache.org_saved(
        Organization(
            orgId="org1",
            name="o",
            accessKey="AK1",
            secretHash=hash_secret("SK1"),
            admin=False,
            createdAt=0,
        )
    )
    app = admit(ConnectAttempt("dash", "AK1", "SK1"), cache, NO_LIMIT, 0)
    assert app == AppIdentity("org1", "dash")
    assert refusal(admit(ConnectAttempt("dash", "AK1", "SK2"), cache, NO_LIMIT, 0)) == (
        "application"
    )
    assert refusal(admit(ConnectAttempt("dash", "AK2", "SK1"), cache, NO_LIMIT, 0)) == (
        "application"
    )


def test_anonymous_clients_only_when_allowed() -> None:
    attempt = ConnectAttempt("c1", None, None)
    assert refusal(admit(attempt, CredentialCache(), NO_LIMIT, 0)) == "anonymous"
    allowed = admit(attempt, CredentialCache(), NO_LIMIT, 0, allow_anonymous=True)
    assert allowed == AnonymousIdentity("c1")


def test_the_connect_limit_refuses_too_soon_then_blocks_a_burst() -> None:
    limiter = AttemptLimiter(ConnectLimit(interval=1.0, burst=3, window=60, block=300))
    key = ("pk1", "dk1")
    assert limiter.allow(key, 0.0) is None
    too_soon = limiter.allow(key, 0.5)
    assert too_soon is not None and not too_soon.blocked
    assert too_soon.seconds == pytest.approx(0.5)
    assert limiter.allow(key, 2.0) is None
    # The fourth attempt within the window (the refused one counts) blocks for 300 s.
    assert limiter.allow(key, 4.0) == Wait(300, blocked=True, started=True)
    assert limiter.allow(key, 100.0) == Wait(204, blocked=True)
    assert limiter.allow(key, 304.5) is None  # the block is over
    assert limiter.allow(("pk1", "other"), 4.0) is None  # per device


def test_attempts_leave_the_window() -> None:
    limiter = AttemptLimiter(ConnectLimit(interval=1.0, burst=2, window=10, block=300))
    key = ("pk1", "dk1")
    for start in (0.0, 11.0, 22.0, 33.0):
        assert limiter.allow(key, start) is None
        assert limiter.allow(key, start + 5) is None


def test_the_failure_table_is_bounded() -> None:
    limiter = AttemptLimiter(ConnectLimit(interval=0, burst=1, window=60, block=60), max_keys=3)
    for n in range(10):
        limiter.count(("pk1", "dk1", f"10.0.0.{n}"), 0.0)
        limiter.count(("pk1", "dk1", f"10.0.0.{n}"), 0.0)  # blocks that address
    assert len(list(limiter.keys_of(("pk1", "dk1")))) <= 6


STAMP = "1795300635825.1592"
WALL = 1795300635825.1592  # the server's clock when the sign above was made


def guessed(n: int, secret: str = "guess-secret") -> ConnectAttempt:
    creds = enos_credentials("pk1", "dk1", secret, STAMP)
    return ConnectAttempt(creds.client_id, creds.username, creds.password, peer=f"10.0.0.{n}")


def test_wrong_signs_do_not_count_against_the_connect_limit() -> None:
    guard = ConnectGuard(ConnectLimit(interval=1.0, burst=4, window=120, block=300))
    cache = cache_with(product(), device())
    for n in range(20):  # a stranger from twenty addresses, each under its failure limit
        assert refusal(admit(guessed(n), cache, guard, n * 0.01, wall_ms=WALL)) == "wrong-sign"
    assert isinstance(admit(signed(), cache, guard, 1.0, wall_ms=WALL), DeviceIdentity)


def test_wrong_signs_block_the_guessing_address_and_only_it() -> None:
    guard = ConnectGuard(failure_limit=ConnectLimit(interval=0, burst=3, window=60, block=600))
    cache = cache_with(product(), device())
    for t in range(3):
        assert refusal(admit(guessed(1), cache, guard, t, wall_ms=WALL)) == "wrong-sign"
    started = admit(guessed(1), cache, guard, 3.0, wall_ms=WALL)
    assert isinstance(started, Refusal) and started.code == 429 and started.announce
    assert "refused until 2026-11-21T22:47:15Z" in started.message  # WALL + 600 s
    # From that address even the right secret is refused unchecked until the block ends:
    # otherwise guessing would go on at full speed. Elsewhere the device gets in.
    right_there = ConnectAttempt(*astuple_of(signed()), peer="10.0.0.1")
    during = admit(right_there, cache, guard, 4.0, wall_ms=WALL)
    assert isinstance(during, Refusal) and during.reason == "sign-failures" and during.quiet
    elsewhere = ConnectAttempt(*astuple_of(signed()), peer="10.0.0.2")
    assert isinstance(admit(elsewhere, cache, guard, 4.0, wall_ms=WALL), DeviceIdentity)
    assert [b.address for b in guard.blocks(("pk1", "dk1"), 4.0)] == ["10.0.0.1"]
    assert guard.clear(("pk1", "dk1")) == 1
    again = ConnectAttempt(*astuple_of(signed(timestamp="1795300635826")), peer="10.0.0.1")
    assert isinstance(admit(again, cache, guard, 5.0, wall_ms=WALL), DeviceIdentity)


def astuple_of(attempt: ConnectAttempt) -> tuple[str, str | None, str | None]:
    return attempt.client_id, attempt.username, attempt.password


@pytest.mark.parametrize("stamp", ["banana", "1e12", "-5", "", "١٧٩٥", "1.2.3", "0x10"])
def test_a_timestamp_that_is_no_number_is_refused(stamp: str) -> None:
    creds = enos_credentials("pk1", "dk1", SECRET, stamp)
    decision = admit(
        ConnectAttempt(creds.client_id, creds.username, creds.password),
        cache_with(product(), device()),
        NO_LIMIT,
        0,
        wall_ms=WALL,
    )
    assert refusal(decision) == "bad-client-id"


@pytest.mark.parametrize(
    ("stamp", "max_age", "admitted"),
    [
        (STAMP, 60.0, True),
        (str(int(WALL / 1000)), 60.0, True),  # seconds, as linkkit signs
        (str(WALL - 59_000), 60.0, True),
        (str(WALL - 61_000), 60.0, False),
        (str(WALL + 61_000), 60.0, False),
        ("99999999999999", 60.0, False),
        ("99999999999999", None, False),  # a day ahead is refused even without a window
        ("1000", None, True),  # a device without a clock
    ],
)
def test_the_sign_max_age(stamp: str, max_age: float | None, admitted: bool) -> None:
    guard = ConnectGuard(OFF, OFF, sign_max_age=max_age)
    creds = enos_credentials("pk1", "dk1", SECRET, stamp)
    attempt = ConnectAttempt(creds.client_id, creds.username, creds.password)
    decision = admit(attempt, cache_with(product(), device()), guard, 0, wall_ms=WALL)
    assert isinstance(decision, DeviceIdentity) is admitted, decision


def test_a_replayed_sign_is_refused_within_the_window() -> None:
    guard = ConnectGuard(OFF, OFF, sign_max_age=600)
    cache = cache_with(product(), device())
    assert isinstance(admit(signed(), cache, guard, 0, wall_ms=WALL), DeviceIdentity)
    assert refusal(admit(signed(), cache, guard, 1, wall_ms=WALL)) == "replayed-sign"


def test_without_a_window_a_sign_used_before_does_not_take_over_an_online_device() -> None:
    guard = ConnectGuard(OFF, OFF)
    cache = cache_with(product(), device())
    assert isinstance(admit(signed(), cache, guard, 0, wall_ms=WALL), DeviceIdentity)
    online = {("pk1", "dk1")}
    in_use = admit(signed(), cache, guard, 1, wall_ms=WALL, online=online)
    assert refusal(in_use) == "sign-in-use"
    # Offline, the SDKs resend the CONNECT they signed once: it is admitted.
    assert isinstance(admit(signed(), cache, guard, 2, wall_ms=WALL), DeviceIdentity)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4/120:300", ConnectLimit(burst=4, window=120, block=300)),
        ("10/60", ConnectLimit(burst=10, window=60, block=300)),
        ("off", ConnectLimit(interval=0, burst=0)),
    ],
)
def test_connect_limit_options(text: str, expected: ConnectLimit) -> None:
    assert ConnectLimit.parse(text) == expected


@pytest.mark.parametrize("text", ["", "4", "x/1", "0/10:5", "4/0:5", "4/10:-1"])
def test_bad_connect_limit_options_say_the_format(text: str) -> None:
    with pytest.raises(ValueError, match=r"BURST/WINDOW|burst must"):
        ConnectLimit.parse(text)


@pytest.mark.parametrize(
    ("argv", "max_age", "failures"),
    [
        ([], None, SIGN_FAILURE_LIMIT),
        (["--sign-max-age", "900", "--sign-failure-limit", "3/60:600"], 900.0,
         ConnectLimit(interval=0, burst=3, window=60, block=600)),
        (["--sign-max-age", "off", "--sign-failure-limit", "off"], None, OFF),
        (["--sign-max-age", "0"], None, SIGN_FAILURE_LIMIT),
    ],
)  # fmt: skip
def test_serve_options_for_signs(
    argv: list[str], max_age: float | None, failures: ConnectLimit
) -> None:
    config = parse_args(argv)
    assert (config.sign_max_age, config.sign_failure_limit) == (max_age, failures)


@pytest.mark.parametrize("argv", [["--sign-max-age", "soon"], ["--sign-max-age", "-1"]])
def test_bad_sign_options_are_refused(argv: list[str]) -> None:
    with pytest.raises(ConfigError):
        parse_args(argv)
