"""Topic grammar of the device namespaces (docs/protocol.md, sections 4 to 6).

A device topic is `/sys/{pk}/{dk}/{rest}`, `/ext/session/{pk}/{dk}/{rest}` or a custom
topic `/{pk}/{dk}/user/{name...}` (Alibaba's, section 12). The functions here split and
classify topics; they never touch the network.
"""

from __future__ import annotations

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
    # What follows `{dk}/`, e.g. "thing/measurepoint/post"; for custom topics it starts
    # with "user/".
    rest: str


def parse_device_topic(topic: str) -> DeviceTopic | None:
    """Split a device topic; None if the topic is outside the device namespaces.

    Custom topics are recognised by their shape alone: whether `{pk}` names a product
    is the ACL's question (broker/gate/access.py)."""
    if topic.startswith("/sys/"):
        parts = topic[5:].split("/", 2)
        namespace = SYS
    elif topic.startswith("/ext/session/"):
        parts = topic[13:].split("/", 2)
        namespace = EXT
    elif topic.startswith("/"):
        parts = topic[1:].split("/", 2)
        if len(parts) < 3 or not parts[2].startswith("user/"):
            return None
        namespace = USER
    else:
        return None
    if len(parts) < 3 or not parts[0] or not parts[1] or not parts[2]:
        return None
    return DeviceTopic(namespace, parts[0], parts[1], parts[2])


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
