"""The topic ACL: who may publish, subscribe and receive where. Plain functions on
identities (no amqtt types), so that an HTTP face for a clustered broker can make the
same decisions.

- A device publishes and subscribes only under its own `/sys/{pk}/{dk}/`,
  `/ext/session/{pk}/{dk}/` and `/{pk}/{dk}/user/` (its custom topics); wildcards may
  follow that prefix, never replace part of it. A gateway also under those of the
  sub-devices logged in through it, and nobody else under theirs. The same is checked
  on each delivery, so a gateway receives nothing of a sub-device that has logged out
  of it, whatever it subscribed to meanwhile.
- An application (an organisation's access key) is read-only: it may subscribe to any
  filter that can match its devices' topics (`#`, `/sys/+/+/#`, `/sys/{pk}/...` for
  its own ProductKey, `/ext/session/...`, `/+/+/user/#`, `/{pk}/...`) and receives its
  own organisation's device traffic only: that is checked on each delivery. The same
  holds for the lifecycle topics `/as/mqtt/status/{pk}/{dk}` (broker/streams/lifecycle.py),
  which only the platform publishes.
- An anonymous client (only with `--allow-anonymous`) never publishes or receives in
  the reserved namespaces `/sys`, `/ext`, `/as` and `$SYS`, nor in a custom namespace
  `/{pk}/{dk}/user/...` whose `{pk}` is a product (any DeviceKey of it, registered or
  not, so that nobody can squat a device's topics before it exists); it may subscribe
  to any filter that can match a topic outside them (`#`, `/#`, `+/...`,
  `/+/+/user/#`), and what it receives is kept outside them on each delivery.
"""

from __future__ import annotations

from collections.abc import Callable

from broker.gate.identity import AnonymousIdentity, AppIdentity, DeviceIdentity, Identity
from broker.protocol import parse_device_topic
from broker.protocol.topics import (
    custom_key,
    custom_product_level,
    may_match_custom,
    only_custom_product,
    user_prefix,
)

# Topic prefixes of the device namespaces: nothing there is retained. (Custom topics,
# `/{pk}/{dk}/user/...`, are no prefix: the router routes them itself, never retained.)
DEVICE_NAMESPACES = ("/sys/", "/ext/")
# The device namespaces and the broker's own: `/sys/...`, `/ext/...`, `/as/...` (the
# lifecycle topics), `$SYS/...`.
RESERVED_PREFIXES: tuple[tuple[str, ...], ...] = (
    ("", "sys"),
    ("", "ext"),
    ("", "as"),
    ("$SYS",),
)
# The lifecycle topics' levels before the ProductKey: /as/mqtt/status/{pk}/{dk}.
STATUS_LEVELS = ["", "as", "mqtt", "status"]

# ProductKey -> owning organisation, from the credential cache.
ProductOwner = Callable[[str], str | None]
# (ProductKey, DeviceKey) of a sub-device -> the gateway it is logged in through.
LoggedInThrough = Callable[[str, str], tuple[str, str] | None]


def _nobody(product_key: str, device_key: str) -> tuple[str, str] | None:
    return None


def in_custom_namespace(topic: str, owner: ProductOwner | None = None) -> bool:
    """True if the topic is a device's custom topic (broker/protocol/topics.py,
    `custom_key`) with `{pk}` a product. Without `owner` to ask, any topic of that
    shape counts (the safe side)."""
    key = custom_key(topic.split("/", 4))
    return key is not None and (owner is None or owner(key[0]) is not None)


def _only_custom(topic_filter: str, owner: ProductOwner | None) -> bool:
    """True if every topic the filter can match is in one product's custom namespace:
    `/{pk}/+/user/...` with a literal `{pk}` that is a product."""
    product_key = only_custom_product(topic_filter)
    return product_key is not None and (owner is None or owner(product_key) is not None)


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


def only_reserved(topic_filter: str) -> bool:
    """True if every topic the filter can match is in a reserved namespace: its literal
    first levels name one (`/sys/...`, `/ext/#`, `$SYS/#`)."""
    levels = topic_filter.split("/")
    return any(tuple(levels[: len(prefix)]) == prefix for prefix in RESERVED_PREFIXES)


def anonymous_may_use(topic: str, owner: ProductOwner | None = None) -> bool:
    """An anonymous client may publish and receive outside the reserved namespaces and
    the products' custom namespaces."""
    return not may_touch_reserved(topic) and not in_custom_namespace(topic, owner)


def anonymous_may_subscribe(topic_filter: str, owner: ProductOwner | None = None) -> bool:
    """Any filter that can match a topic outside the reserved and custom namespaces;
    deliveries into them are refused one by one (`may_receive`)."""
    return not only_reserved(topic_filter) and not _only_custom(topic_filter, owner)


def device_may_use(
    device: DeviceIdentity, topic_filter: str, through: LoggedInThrough = _nobody
) -> bool:
    """Publish, subscribe or receive: the device's own prefixes, which are literal (no
    `+`/`#`), and those of the sub-devices logged in through it now when it is a
    gateway (a prefix test, then one lookup)."""
    if (
        topic_filter.startswith(device.sys_prefix)
        or topic_filter.startswith(device.ext_prefix)
        or topic_filter.startswith(user_prefix(device.product_key, device.device_key))
    ):
        return True
    parsed = parse_device_topic(topic_filter)
    if parsed is None:
        return False
    key = (parsed.product_key, parsed.device_key)
    return key == device.key or through(*key) == device.key


def product_of_filter(topic_filter: str) -> str | None:
    """The literal ProductKey a device-namespace filter names, or None if it names none."""
    levels = topic_filter.split("/")
    if len(levels) >= 4 and levels[:2] == ["", "sys"]:
        product_key = levels[2]
    elif len(levels) >= 5 and levels[:3] == ["", "ext", "session"]:
        product_key = levels[3]
    elif len(levels) >= 6 and levels[:4] == STATUS_LEVELS:
        product_key = levels[4]
    elif (custom := custom_key(levels)) is not None:
        product_key = custom[0]
    else:
        return None
    return None if product_key in ("", "+", "#") else product_key


def _named_product(topic_filter: str) -> str | None:
    """The literal ProductKey level of a device-namespace filter, however short."""
    levels = topic_filter.split("/")
    if levels[:2] == ["", "sys"] and len(levels) > 2:
        product_key = levels[2]
    elif levels[:3] == ["", "ext", "session"] and len(levels) > 3:
        product_key = levels[3]
    elif levels[:4] == STATUS_LEVELS and len(levels) > 4:
        product_key = levels[4]
    else:
        return custom_product_level(topic_filter)  # a custom topic's `/{pk}/...`
    return None if product_key in ("+", "#") else product_key


def app_may_subscribe(app: AppIdentity, topic_filter: str, owner: ProductOwner) -> bool:
    """A filter that can match device topics, naming no ProductKey of another
    organisation; each delivery is checked against the organisation (`may_receive`)."""
    if not _may_match_device_topic(topic_filter):
        return False
    product_key = _named_product(topic_filter)
    return product_key is None or owner(product_key) == app.org_id


def _may_match_device_topic(topic_filter: str) -> bool:
    levels = topic_filter.split("/")
    return (
        _may_match_prefix(levels, ("", "sys"))
        or _may_match_prefix(levels, ("", "ext"))
        or _may_match_prefix(levels, tuple(STATUS_LEVELS))
        or may_match_custom(topic_filter)
    )


def may_publish(
    identity: Identity,
    topic: str,
    through: LoggedInThrough = _nobody,
    owner: ProductOwner | None = None,
) -> bool:
    if isinstance(identity, DeviceIdentity):
        return device_may_use(identity, topic, through)
    if isinstance(identity, AnonymousIdentity):
        return anonymous_may_use(topic, owner)
    return False  # applications are read-only


def may_subscribe(
    identity: Identity,
    topic_filter: str,
    owner: ProductOwner,
    through: LoggedInThrough = _nobody,
) -> bool:
    if isinstance(identity, DeviceIdentity):
        return device_may_use(identity, topic_filter, through)
    if isinstance(identity, AppIdentity):
        return app_may_subscribe(identity, topic_filter, owner)
    return anonymous_may_subscribe(topic_filter, owner)


def may_receive(
    identity: Identity, topic: str, owner: ProductOwner, through: LoggedInThrough = _nobody
) -> bool:
    """Checked on each delivery: a subscription was checked when it was made, but what
    it may receive can change since (a product deleted, a sub-device that logged out
    of the gateway subscribed for it)."""
    if isinstance(identity, DeviceIdentity):
        return device_may_use(identity, topic, through)
    if isinstance(identity, AnonymousIdentity):
        return anonymous_may_use(topic, owner)
    product_key = product_of_filter(topic)
    return product_key is not None and owner(product_key) == identity.org_id
