"""The subscription index against the MQTT 3.1.1 matching rules (pure, no broker)."""

from __future__ import annotations

import random

import pytest

from broker.core import SubscriptionIndex, is_valid_filter, matches


@pytest.mark.parametrize(
    ("topic", "topic_filter", "expected"),
    [
        ("a/b/c", "a/b/c", True),
        ("a/b/c", "a/+/c", True),
        ("a/b/c", "a/#", True),
        ("a", "a/#", True),  # '#' also matches the parent level
        ("a/b/c", "#", True),
        ("a/b", "a/+/c", False),
        ("a/b/c/d", "a/+/c", False),
        ("a//c", "a/+/c", True),  # empty levels are levels
        ("/a", "+/a", True),
        ("$SYS/x", "#", False),  # [MQTT-4.7.2-1]
        ("$SYS/x", "+/x", False),
        ("$SYS/x", "$SYS/#", True),
        ("a/b", "A/b", False),
    ],
)
def test_matching_rules(topic: str, topic_filter: str, expected: bool) -> None:
    assert matches(topic, topic_filter) is expected
    index: SubscriptionIndex[str, int] = SubscriptionIndex()
    index.add(topic_filter, "client", 1)
    assert (list(index.match(topic)) == [("client", 1)]) is expected


@pytest.mark.parametrize("bad", ["", "a/#/b", "a/b#", "#/", "a+", "+a/b", "a/\0"])
def test_malformed_filters_are_invalid(bad: str) -> None:
    assert not is_valid_filter(bad)


@pytest.mark.parametrize("good", ["#", "+", "a/+/#", "/", "a//b", "+/+/+"])
def test_wellformed_filters_are_valid(good: str) -> None:
    assert is_valid_filter(good)


def test_the_index_agrees_with_brute_force_matching() -> None:
    rng = random.Random(7)
    words = ["a", "b", "", "c"]
    filters = {
        "/".join(rng.choice([*words, "+"]) for _ in range(rng.randint(1, 4)))
        + rng.choice(["", "/#"])
        for _ in range(300)
    } | {"#"}
    index: SubscriptionIndex[str, str] = SubscriptionIndex()
    for n, topic_filter in enumerate(sorted(filters)):
        index.add(topic_filter, f"c{n}", topic_filter)
    for _ in range(500):
        topic = "/".join(rng.choice(words) for _ in range(rng.randint(1, 5)))
        expected = sorted(f for f in filters if matches(topic, f))
        assert sorted(value for _client, value in index.match(topic)) == expected


def test_removing_a_client_removes_all_its_filters_and_prunes_the_trie() -> None:
    index: SubscriptionIndex[str, int] = SubscriptionIndex()
    index.add("x/+/y", "dev1", 0)
    index.add("x/#", "dev1", 1)
    index.add("x/a/y", "dev1", 1)
    index.add("x/a/y", "dev2", 0)
    assert len(index) == 4
    assert sorted(index.remove_client("dev1")) == ["x/#", "x/+/y", "x/a/y"]
    assert list(index.match("x/a/y")) == [("dev2", 0)]
    assert index.remove_client("dev1") == []
    assert index.remove("x/a/y", "dev2") is True
    assert index.remove("x/a/y", "dev2") is False
    assert len(index) == 0
    assert list(index.match("x/a/y")) == []
    assert index._root.children == {}  # nothing left behind by pruning


def test_resubscribing_replaces_the_granted_qos() -> None:
    index: SubscriptionIndex[str, int] = SubscriptionIndex()
    assert index.add("t", "dev", 0) is True
    assert index.add("t", "dev", 1) is False
    assert list(index.match("t")) == [("dev", 1)]
    assert index.filters_of("dev") == {"t": 1}
