"""The topic ACL, as pure logic: reserved namespaces, devices, applications."""

from __future__ import annotations

import pytest

from broker.gate.access import (
    anonymous_may_use,
    device_may_use,
    may_publish,
    may_receive,
    may_subscribe,
    may_touch_reserved,
)
from broker.gate.identity import AnonymousIdentity, AppIdentity, DeviceIdentity


@pytest.mark.parametrize(
    "topic",
    [
        "/sys/pk/dk/thing/measurepoint/post",
        "/ext/session/pk/dk/combine/login",
        "$SYS/broker/uptime",
        "#",
        "/#",
        "+/sys/#",
        "/+/pk/dk",
        "+/+/+/+",
        "/sys",
        "$SYS",
        "+/#",
        "+",  # could match the topic "$SYS"; refused to stay on the safe side
    ],
)
def test_reserved_or_could_match_reserved(topic: str) -> None:
    assert may_touch_reserved(topic)
    assert not anonymous_may_use(topic)


@pytest.mark.parametrize(
    "topic",
    ["demo/temp", "sys/pk/dk", "/system/x", "/extra/x", "home/+/temp", "home/#", "a/sys/b"],
)
def test_outside_the_reserved_namespaces(topic: str) -> None:
    assert not may_touch_reserved(topic)
    assert anonymous_may_use(topic)


DEVICE = DeviceIdentity("pkA", "dkA", "org1")
APP = AppIdentity("org1", "dashboard")
OWNERS = {"pkA": "org1", "pkB": "org2"}


@pytest.mark.parametrize(
    "topic",
    [
        "/sys/pkA/dkA/thing/measurepoint/post",
        "/sys/pkA/dkA/thing/event/overheat/post",
        "/ext/session/pkA/dkA/combine/login",
        "/sys/pkA/dkA/#",
        "/sys/pkA/dkA/thing/+/post_reply",
    ],
)
def test_a_device_may_use_its_own_topics(topic: str) -> None:
    assert device_may_use(DEVICE, topic)
    assert may_subscribe(DEVICE, topic, OWNERS.get)


@pytest.mark.parametrize(
    "topic",
    [
        "#",
        "$SYS/#",
        "/sys/#",
        "/sys/pkA/#",
        "/sys/pkA/+/thing/measurepoint/post",
        "/sys/+/dkA/thing/measurepoint/post",
        "/sys/pkA/dkB/thing/measurepoint/post",
        "/sys/pkA/dkAX/thing/measurepoint/post",  # a longer key with the same start
        "/sys/pkA/dkA",
        "/ext/session/pkA/+/combine/login",
        "/ext/pkA/dkA/x",
        "sys/pkA/dkA/thing/measurepoint/post",
        "demo/topic",
    ],
)
def test_a_device_may_not_leave_its_own_topics(topic: str) -> None:
    assert not device_may_use(DEVICE, topic)
    assert not may_publish(DEVICE, topic)
    assert not may_subscribe(DEVICE, topic, OWNERS.get)


@pytest.mark.parametrize(
    ("topic_filter", "allowed"),
    [
        ("/sys/pkA/+/thing/measurepoint/post", True),
        ("/sys/pkA/#", True),
        ("/ext/session/pkA/+/combine/#", True),
        ("/sys/pkB/#", False),  # another organisation's product
        # Wide filters are granted: each delivery is checked against the organisation.
        ("/sys/+/+/thing/measurepoint/post", True),
        ("/sys/#", True),
        ("#", True),
        ("/sys/unknown/#", False),
        ("demo/x", False),  # can match no device topic
        ("$SYS/#", False),
    ],
)
def test_an_application_subscribes_to_its_own_products_only(
    topic_filter: str, allowed: bool
) -> None:
    assert may_subscribe(APP, topic_filter, OWNERS.get) is allowed


@pytest.mark.parametrize(
    ("topic_filter", "allowed"),
    [
        ("#", True),
        ("/#", True),
        ("+/sys/#", True),
        ("+/+", True),
        ("demo/#", True),
        ("/sys/#", False),
        ("/sys/pk/dk/thing/service/reboot", False),
        ("/ext/session/#", False),
        ("$SYS/#", False),
    ],
)
def test_an_anonymous_client_subscribes_to_any_filter_reaching_outside_the_namespaces(
    topic_filter: str, allowed: bool
) -> None:
    anonymous = AnonymousIdentity("plain")
    assert may_subscribe(anonymous, topic_filter, OWNERS.get) is allowed
    assert not may_receive(anonymous, "/sys/pkA/dkA/thing/measurepoint/post", OWNERS.get)


def test_an_application_is_read_only_and_receives_its_own_products_only() -> None:
    assert not may_publish(APP, "/sys/pkA/dkA/thing/service/reboot")
    assert may_receive(APP, "/sys/pkA/dkA/thing/measurepoint/post", OWNERS.get)
    assert not may_receive(APP, "/sys/pkB/dkB/thing/measurepoint/post", OWNERS.get)
