"""Who may do what on the MQTT side, as plain functions (no amqtt types), so that an
HTTP face for a clustered broker can make the same decisions.

Until device admission lands, the only MQTT clients are anonymous ones, admitted when
`gatehouse serve --allow-anonymous` says so, and kept out of the reserved namespaces.
"""

from __future__ import annotations

# The device namespaces and the broker's own: `/sys/...`, `/ext/...`, `$SYS/...`.
RESERVED_PREFIXES: tuple[tuple[str, ...], ...] = (("", "sys"), ("", "ext"), ("$SYS",))


def may_touch_reserved(topic_filter: str) -> bool:
    """True if the topic or filter names, or could match, a topic in a reserved namespace.

    Conservative on purpose: `#`, `+/sys/#` and `/+/x` all count, since a client that
    may subscribe to them would see device traffic.
    """
    levels = topic_filter.split("/")
    return any(_may_match_prefix(levels, prefix) for prefix in RESERVED_PREFIXES)


def _may_match_prefix(levels: list[str], prefix: tuple[str, ...]) -> bool:
    for index, wanted in enumerate(prefix):
        if index >= len(levels):
            return False
        level = levels[index]
        if level == "#":
            return True
        if level not in ("+", wanted):
            return False
    return True


def anonymous_may_use(topic_filter: str) -> bool:
    """An anonymous client may publish, subscribe and receive outside the reserved namespaces."""
    return not may_touch_reserved(topic_filter)
