"""Subscriptions indexed so that routing a message costs the same at 10 or 10,000 clients.

Exact filters (every device's reply and downlink topics) sit in a dict keyed by topic;
wildcard filters sit in a trie walked level by level, which visits only the branches
a topic can match. A per-client reverse index makes a disconnect cost what that client
subscribed to, not what the whole broker holds. Pure data structure: no amqtt, no I/O.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

C = TypeVar("C", bound=Hashable)  # the client key (the MQTT client id)
V = TypeVar("V")  # what is kept per subscription (session and granted QoS)


def is_valid_filter(topic_filter: str) -> bool:
    """MQTT 3.1.1, 4.7.1: '#' only as the whole last level, '+' only as a whole level."""
    if not topic_filter or "\0" in topic_filter:
        return False
    levels = topic_filter.split("/")
    last = len(levels) - 1
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != last):
            return False
        if "+" in level and level != "+":
            return False
    return True


def has_wildcard(topic_filter: str) -> bool:
    return "+" in topic_filter or "#" in topic_filter


def matches(topic: str, topic_filter: str) -> bool:
    """Whether a topic name matches a (valid) filter; '$' topics never match a leading wildcard."""
    if not has_wildcard(topic_filter):
        return topic == topic_filter
    if topic.startswith("$") and topic_filter[0] in "+#":
        return False
    levels = topic.split("/")
    parts = topic_filter.split("/")
    for index, part in enumerate(parts):
        if part == "#":
            return True
        if index >= len(levels) or (part != "+" and part != levels[index]):
            return False
    return len(parts) == len(levels)


@dataclass(slots=True)
class _Node(Generic[C, V]):
    children: dict[str, _Node[C, V]] = field(default_factory=dict)
    subscribers: dict[C, V] = field(default_factory=dict)  # filters ending at this node
    rest: dict[C, V] = field(default_factory=dict)  # filters ending in '#' below this node


class SubscriptionIndex(Generic[C, V]):
    """Topic filter -> subscribers, with at most one subscription per (filter, client)."""

    def __init__(self) -> None:
        self._exact: dict[str, dict[C, V]] = {}
        self._root: _Node[C, V] = _Node()
        self._by_client: dict[C, dict[str, V]] = {}

    def __len__(self) -> int:
        """The number of (filter, client) subscriptions held."""
        return sum(len(filters) for filters in self._by_client.values())

    def clear(self) -> None:
        self._exact.clear()
        self._root = _Node()
        self._by_client.clear()

    def add(self, topic_filter: str, client: C, value: V) -> bool:
        """Subscribe, replacing the client's earlier subscription to the same filter.

        Returns whether the subscription is new.
        """
        if has_wildcard(topic_filter):
            node = self._root
            parts = topic_filter.split("/")
            for part in parts[:-1] if parts[-1] == "#" else parts:
                node = node.children.setdefault(part, _Node())
            bucket = node.rest if parts[-1] == "#" else node.subscribers
        else:
            bucket = self._exact.setdefault(topic_filter, {})
        new = client not in bucket
        bucket[client] = value
        self._by_client.setdefault(client, {})[topic_filter] = value
        return new

    def remove(self, topic_filter: str, client: C) -> bool:
        """Unsubscribe one filter; returns whether the client had subscribed to it."""
        filters = self._by_client.get(client)
        if filters is None or filters.pop(topic_filter, None) is None:
            return False
        if not filters:
            del self._by_client[client]
        if not has_wildcard(topic_filter):
            bucket = self._exact[topic_filter]
            del bucket[client]
            if not bucket:
                del self._exact[topic_filter]
            return True
        parts = topic_filter.split("/")
        trail = [self._root]
        for part in parts[:-1] if parts[-1] == "#" else parts:
            trail.append(trail[-1].children[part])
        node = trail[-1]
        del (node.rest if parts[-1] == "#" else node.subscribers)[client]
        self._prune(trail, parts)
        return True

    def remove_client(self, client: C) -> list[str]:
        """Drop every subscription of a client; returns the filters it held."""
        filters = list(self._by_client.get(client, ()))
        for topic_filter in filters:
            self.remove(topic_filter, client)
        return filters

    def filters_of(self, client: C) -> dict[str, V]:
        return dict(self._by_client.get(client, {}))

    def items(self) -> Iterator[tuple[str, C, V]]:
        for client, filters in self._by_client.items():
            for topic_filter, value in filters.items():
                yield topic_filter, client, value

    def match(self, topic: str) -> Iterator[tuple[C, V]]:
        """Every (client, value) whose filter matches the topic, once per matching filter."""
        exact = self._exact.get(topic)
        if exact:
            yield from exact.items()
        root = self._root
        if not root.children and not root.rest:
            return
        levels = topic.split("/")
        # [MQTT-4.7.2-1] '$' topics are not matched by filters starting with a wildcard.
        dollar = topic.startswith("$")
        stack: list[tuple[_Node[C, V], int]] = [(root, 0)]
        while stack:
            node, depth = stack.pop()
            wild_allowed = not (dollar and depth == 0)
            if node.rest and wild_allowed:
                yield from node.rest.items()
            if depth == len(levels):
                if node.subscribers:
                    yield from node.subscribers.items()
                continue
            child = node.children.get(levels[depth])
            if child is not None:
                stack.append((child, depth + 1))
            plus = node.children.get("+") if wild_allowed else None
            if plus is not None:
                stack.append((plus, depth + 1))

    @staticmethod
    def _prune(trail: list[_Node[C, V]], parts: list[str]) -> None:
        keys = parts[:-1] if parts[-1] == "#" else parts
        for depth in range(len(keys), 0, -1):
            node = trail[depth]
            if node.children or node.subscribers or node.rest:
                return
            del trail[depth - 1].children[keys[depth - 1]]
