"""Live sub-device sessions, as pure state: logins, the limit, moves, gateway loss."""

from __future__ import annotations

from broker.gate.access import may_publish, may_subscribe
from broker.gate.identity import DeviceIdentity
from broker.gate.subdevices import SubDeviceSessions

GATEWAY = ("gpk", "gw1")
OTHER = ("gpk", "gw2")


def test_login_logout_and_the_count() -> None:
    sessions = SubDeviceSessions(limit=2)
    sessions.login(GATEWAY, ("spk", "a"))
    sessions.login(GATEWAY, ("spk", "b"))
    assert sessions.full(GATEWAY) and sessions.count(GATEWAY) == 2
    assert sessions.through("spk", "a") == GATEWAY
    assert sessions.logout(("spk", "a")) == GATEWAY
    assert sessions.logout(("spk", "a")) is None
    assert not sessions.full(GATEWAY)


def test_a_sub_device_is_logged_in_through_one_gateway_at_a_time() -> None:
    sessions = SubDeviceSessions()
    sessions.login(GATEWAY, ("spk", "a"))
    sessions.login(OTHER, ("spk", "a"))
    assert sessions.through("spk", "a") == OTHER
    assert sessions.count(GATEWAY) == 0 and list(sessions.of(OTHER)) == [("spk", "a")]


def test_losing_a_gateway_logs_out_all_of_its_sub_devices() -> None:
    sessions = SubDeviceSessions()
    for key in ("a", "b"):
        sessions.login(GATEWAY, ("spk", key))
    sessions.login(OTHER, ("spk", "c"))
    assert sessions.gateway_gone(GATEWAY) == [("spk", "a"), ("spk", "b")]
    assert sessions.through("spk", "a") is None
    assert sessions.through("spk", "c") == OTHER


def test_a_gateway_may_use_only_the_topics_of_its_logged_in_sub_devices() -> None:
    sessions = SubDeviceSessions()
    sessions.login(GATEWAY, ("spk", "a"))
    gateway = DeviceIdentity(*GATEWAY, "org1")
    other = DeviceIdentity(*OTHER, "org1")
    own = {"gpk": "org1", "spk": "org1"}.get
    assert may_publish(gateway, "/sys/spk/a/thing/measurepoint/post", sessions.through)
    assert may_subscribe(gateway, "/sys/spk/a/thing/service/#", own, sessions.through)
    assert not may_publish(gateway, "/sys/spk/b/thing/measurepoint/post", sessions.through)
    assert not may_subscribe(gateway, "/sys/spk/+/thing/service/#", own, sessions.through)
    assert not may_publish(other, "/sys/spk/a/thing/measurepoint/post", sessions.through)
