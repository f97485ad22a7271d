"""Topic grammar of the device namespaces (docs/protocol.md, sections 4 to 6).

A device topic is `/sys/{pk}/{dk}/{rest}`, `/ext/session/{pk}/{dk}/{rest}` or a custom
topic `/{pk}/{dk}/user/{name...}` (Alibaba's, section 12; its namespace is `/{pk}/{dk}/user`
and everything under it, as `custom_key` says, for the router and the ACL alike). The
functions here split and classify topics; they never touch the network.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

SYS = "sys"
EXT = "ext"
USER = "user"  # custom topics: /{pk}/{dk}/user/{name...}
REPLY_SUFFIX = "_reply"
# What a device appends to a custom topic it wants parsed by its product's
# transformPayload (Alibaba's parsing tag): the topic level ends with it literally.
PARSE_TAG = "?_sn=default"


@dataclass(frozen=True, slots=True)
class DeviceTopic:
    namespace: str  # "sys", "ext" or "user"
    product_key: str
    device_key: str
    # What follows `{dk}/`, e.g. "thing/measurepoint/post"; for custom topics "user"
    # or "user/{name...}".
    rest: str


def parse_device_topic(topic: str) -> DeviceTopic | None:
    """Split a device topic; None if the topic is outside the device namespaces.

    Custom topics are recognised by their shape alone (`custom_key`): whether `{pk}`
    names a product is the ACL's question (broker/gate/access.py)."""
    if topic.startswith("/sys/"):
        parts = topic[5:].split("/", 2)
        namespace = SYS
    elif topic.startswith("/ext/session/"):
        parts = topic[13:].split("/", 2)
        namespace = EXT
    else:
        levels = topic.split("/", 4)  # `{rest}` whole, from `user` on
        key = custom_key(levels)
        if key is None:
            return None
        return DeviceTopic(USER, *key, "/".join(levels[3:]))
    if len(parts) < 3 or not parts[0] or not parts[1] or not parts[2]:
        return None
    return DeviceTopic(namespace, parts[0], parts[1], parts[2])


# -- the one grammar of custom topics (the ACL's filters use it too) -----------------------

# First levels after the leading `/` that are other namespaces (`/sys`, `/ext`, the
# lifecycle topics' `/as`), so never a custom topic's `{pk}`.
RESERVED_FIRST_LEVELS = (SYS, EXT, "as")
_WILDCARDS = ("+", "#")


def custom_key(levels: Sequence[str]) -> tuple[str, str] | None:
    """(`{pk}`, `{dk}`) if a topic, split at its `/`, is in a device's custom namespace:
    `/{pk}/{dk}/user` and every topic under it, `{pk}` and `{dk}` not empty and `{pk}`
    not another namespace's first level. (A filter's wildcards are taken as levels.)"""
    if (
        len(levels) >= 4
        and levels[0] == ""
        and levels[3] == USER
        and levels[1]
        and levels[2]
        and levels[1] not in RESERVED_FIRST_LEVELS
    ):
        return levels[1], levels[2]
    return None


def only_custom_product(topic_filter: str) -> str | None:
    """The literal `{pk}` if every topic the filter can match is in that product's
    custom namespace (`/{pk}/+/user/#`, `/{pk}/{dk}/user/x`), else None."""
    key = custom_key(topic_filter.split("/"))
    if key is None or key[0] in _WILDCARDS or key[1] == "#":
        return None
    return key[0]


def may_match_custom(topic_filter: str) -> bool:
    """Whether a filter can match some topic in a custom namespace (`#`, `/+/+/user/#`)."""
    levels = topic_filter.split("/")
    for index, level in enumerate(levels[:4]):
        if level == "#":
            return True
        if index == 0:
            fits = level in ("", "+")
        elif index == 3:
            fits = level in ("+", USER)
        else:  # `{pk}` or `{dk}`: never empty, and `{pk}` not another namespace's
            fits = bool(level) and not (index == 1 and level in RESERVED_FIRST_LEVELS)
        if not fits:
            return False
    return len(levels) >= 4


def custom_product_level(topic_filter: str) -> str | None:
    """The literal `{pk}` a filter that can match custom topics names, if it names one."""
    if not may_match_custom(topic_filter):
        return None
    levels = topic_filter.split("/", 2)
    product_key = levels[1] if len(levels) > 1 else "#"
    return None if product_key in _WILDCARDS else product_key


def user_prefix(product_key: str, device_key: str) -> str:
    """Where a device's custom topics live (Alink's `/${productKey}/${deviceName}/user/`)."""
    return f"/{product_key}/{device_key}/user/"


def untagged(topic: str) -> tuple[str, bool]:
    """A custom topic without its parsing tag, and whether it carried one."""
    if topic.endswith(PARSE_TAG):
        return topic[: -len(PARSE_TAG)], True
    return topic, False


def sys_prefix(product_key: str, device_key: str) -> str:
    return f"/sys/{product_key}/{device_key}/"


def ext_prefix(product_key: str, device_key: str) -> str:
    return f"/ext/session/{product_key}/{device_key}/"


def reply_topic(topic: str) -> str:
    return topic + REPLY_SUFFIX


# Custom data format (protocol.md, sections 4 and 5): the same names in both dialects.
RAW_UP = "thing/model/up_raw"
RAW_DOWN = "thing/model/down_raw"
RAW_DOWN_REPLY = RAW_DOWN + REPLY_SUFFIX


def raw_up_topic(product_key: str, device_key: str) -> str:
    return sys_prefix(product_key, device_key) + RAW_UP


def raw_down_topic(product_key: str, device_key: str) -> str:
    """Where commands to a device with a script or codec go down, as bytes."""
    return sys_prefix(product_key, device_key) + RAW_DOWN


def downlink_filters(product_key: str, device_key: str) -> tuple[str, str]:
    """What a device is subscribed to by the server at CONNECT (docs/protocol.md, section 3).

    Everything in the device's own namespaces: replies, service calls, property sets,
    raw down, activation and sub-device notices. The broker never echoes a device's own
    PUBLISH back to it through these.
    """
    return sys_prefix(product_key, device_key) + "#", ext_prefix(product_key, device_key) + "#"


class Uplink(Enum):
    """EnOS uplink functions, by the topic a device publishes them on."""

    PROPERTY_POST = "thing/event/property/post"  # Alink's measurepoint post
    MEASUREPOINT_POST = "thing/measurepoint/post"
    MEASUREPOINT_POST_BATCH = "thing/measurepoint/post/batch"
    MEASUREPOINT_RESUME = "thing/measurepoint/resume"
    MEASUREPOINT_RESUME_BATCH = "thing/measurepoint/resume/batch"
    EVENT_POST = "thing/event/{event}/post"
    ATTRIBUTE_UPDATE = "thing/attribute/update"
    ATTRIBUTE_QUERY = "thing/attribute/query"
    ATTRIBUTE_DELETE = "thing/attribute/delete"
    RAW_UP = "thing/model/up_raw"


_EXACT_UPLINKS = {
    u.value: u for u in Uplink if "{" not in u.value and u is not Uplink.PROPERTY_POST
}


def classify_enos_uplink(rest: str) -> tuple[Uplink, str] | None:
    """The uplink a `/sys/{pk}/{dk}/{rest}` topic carries, and the event id for events.

    None for topics that are not EnOS uplinks (replies, downlinks, unknown functions).
    """
    found = _EXACT_UPLINKS.get(rest)
    if found is not None:
        return found, ""
    if rest.startswith("thing/event/") and rest.endswith("/post"):
        event = rest[12:-5]
        if event and "/" not in event:
            return Uplink.EVENT_POST, event
    return None


def classify_alink_uplink(rest: str) -> tuple[Uplink, str] | None:
    """The uplink an Alink `/sys/{pk}/{dn}/{rest}` carries (docs/protocol.md, section 4)."""
    if rest == Uplink.PROPERTY_POST.value:
        return Uplink.PROPERTY_POST, ""
    if rest.startswith("thing/event/") and rest.endswith("/post"):
        event = rest[12:-5]
        if event and "/" not in event:
            return Uplink.EVENT_POST, event
    if rest == Uplink.RAW_UP.value:
        return Uplink.RAW_UP, ""
    return None
