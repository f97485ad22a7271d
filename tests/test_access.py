"""The reserved-namespace rule, as pure logic."""

from __future__ import annotations

import pytest

from broker.access import anonymous_may_use, may_touch_reserved


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
