"""The topic ACL, as pure logic: reserved namespaces, devices, applications."""

from __future__ import annotations

import pytest

from broker.gate.access import (
    anonymous_may_use,
    device_may_use,
    in_custom_namespace,
    may_publish,
    may_receive,
    may_subscribe,
    may_touch_reserved,
    product_of_filter,
)
from broker.gate.identity import AnonymousIdentity, AppIdentity, DeviceIdentity
from broker.protocol import parse_device_topic
from broker.protocol.topics import USER


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


# -- custom topics: one grammar for the router and the ACL ---------------------------------


@pytest.mark.parametrize(
    ("topic", "custom"),
    [
        ("/pkA/dkA/user/update", ("pkA", "dkA", "user/update")),
        ("/pkA/dkA/user/a/b?_sn=default", ("pkA", "dkA", "user/a/b?_sn=default")),
        ("/pkA/dkA/user/", ("pkA", "dkA", "user/")),
        # The namespace's root is in it, as `/pkA/dkA/user/#` matches it.
        ("/pkA/dkA/user", ("pkA", "dkA", "user")),
        # Other namespaces' first levels are never a `{pk}`.
        ("/ext/x/user/y", None),
        ("/as/x/user/y", None),
        ("/sys/x/user/y", None),  # a /sys topic of product x, device "user"
        ("//dkA/user/x", None),
        ("/pkA//user/x", None),
        ("pkA/dkA/user/x", None),
        ("/pkA/dkA/users/x", None),
        ("/pkA/dkA/user?_sn=default", None),
        ("/pkA/dkA", None),
    ],
)
def test_the_router_and_the_acl_read_custom_topics_alike(
    topic: str, custom: tuple[str, str, str] | None
) -> None:
    parsed = parse_device_topic(topic)
    seen = parsed and parsed.namespace == USER and (parsed.product_key, parsed.device_key)
    assert (seen or None) == (custom and custom[:2])
    if custom is not None:
        assert parsed is not None and parsed.rest == custom[2]
    assert in_custom_namespace(topic) is (custom is not None)
    assert (product_of_filter(topic) if not topic.startswith("/sys/") else None) == (
        custom and custom[0]
    )
    # Anonymous clients are kept out of exactly the custom topics of a product.
    assert anonymous_may_use(topic, {"pkA": "org1", "ext": "org1", "as": "org1"}.get) is (
        custom is None and not may_touch_reserved(topic)
    )


def test_a_device_uses_all_of_its_custom_namespace_and_nothing_of_the_same_shape_else() -> None:
    assert may_publish(DEVICE, "/pkA/dkA/user")
    assert may_subscribe(DEVICE, "/pkA/dkA/user/#", OWNERS.get)
    assert not may_publish(DEVICE, "/pkA/dkAX/user/x")
    assert not may_publish(DEVICE, "/pkA/dkA/userX/x")


GATEWAY = DeviceIdentity("pkG", "gw", "org1")


@pytest.mark.parametrize(
    "topic", ["/pkS/sub/user/update", "/sys/pkS/sub/thing/service/reboot", "/pkS/sub/user"]
)
def test_a_gateway_receives_a_sub_devices_topics_only_while_it_is_logged_in_through_it(
    topic: str,
) -> None:
    logged_in: dict[tuple[str, str], tuple[str, str]] = {("pkS", "sub"): GATEWAY.key}

    def through(product_key: str, device_key: str) -> tuple[str, str] | None:
        return logged_in.get((product_key, device_key))

    assert may_receive(GATEWAY, topic, OWNERS.get, through)
    logged_in[("pkS", "sub")] = ("pkG", "another-gateway")  # moved
    assert not may_receive(GATEWAY, topic, OWNERS.get, through)
    del logged_in[("pkS", "sub")]  # logged out
    assert not may_receive(GATEWAY, topic, OWNERS.get, through)
    assert may_receive(GATEWAY, "/sys/pkG/gw/thing/service/reboot", OWNERS.get, through)
