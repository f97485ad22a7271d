"""What applications subscribe with: data subscriptions (EnOS's Data Subscription, consumed
with `enos-subscribe`) and webhooks, the messages retained for each subscription, and
each consumer group's committed offsets; `StreamStore` is what keeps them.

A subscription's messages are spread over `PARTITIONS` partitions by device, each with
offsets of its own, as in Kafka: one consumer of a group owns a partition at a time, so
an offset it commits covers only what it was given.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict

from registry import ids
from registry.errors import InvalidArgument

# The kinds of data an application can ask for.
KINDS = ("measurepoints", "events", "online", "offline", "commands", "custom")
PARTITIONS = 2  # consumers of one group that share the work (EnOS supports two)
MAX_NAME = 64
MAX_PRODUCTS = 100
MAX_URL = 2048
# EnOS: "English letters, numbers, underscores, and hyphens".
SUB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
GROUP = re.compile(r"[A-Za-z0-9_.-]{0,64}")

# (sub_id, partition, offset, ts, key, value): one retained message
StreamRow = tuple[str, int, int, int, str, str]


class Subscription(BaseModel):
    """A data subscription; its access key and secret are what the client signs with."""

    model_config = ConfigDict(frozen=True)

    subId: str
    orgId: str
    name: str = ""
    productKeys: list[str]  # empty: every product of the organisation
    kinds: list[str]
    accessKey: str
    accessSecret: str  # kept as it is: the client's sign is a digest over it
    createdAt: int

    def view(self, *, with_secret: bool = False) -> dict[str, Any]:
        return self.model_dump(exclude={"orgId"} if with_secret else {"orgId", "accessSecret"})

    def wants(self, product_key: str, kind: str) -> bool:
        return kind in self.kinds and (not self.productKeys or product_key in self.productKeys)


class Webhook(BaseModel):
    """An HTTP endpoint that gets the organisation's messages, signed with `secret`."""

    model_config = ConfigDict(frozen=True)

    webhookId: str
    orgId: str
    url: str
    productKeys: list[str]
    kinds: list[str]
    secret: str  # the HMAC key: shown once, at create
    createdAt: int

    def view(self, *, with_secret: bool = False) -> dict[str, Any]:
        return self.model_dump(exclude={"orgId"} if with_secret else {"orgId", "secret"})

    def wants(self, product_key: str, kind: str) -> bool:
        return kind in self.kinds and (not self.productKeys or product_key in self.productKeys)


def _filter(body: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    products = body.get("productKeys", [])
    if not isinstance(products, list) or not all(isinstance(p, str) and p for p in products):
        raise InvalidArgument("productKeys must be a list of ProductKeys (empty: every product)")
    if len(products) > MAX_PRODUCTS:
        raise InvalidArgument(f"productKeys may name at most {MAX_PRODUCTS} products")
    kinds = body.get("kinds", list(KINDS))
    if not isinstance(kinds, list) or not kinds:
        raise InvalidArgument(f"kinds must be a non-empty list of: {', '.join(KINDS)}")
    for kind in kinds:
        if kind not in KINDS:
            raise InvalidArgument(f"unknown kind {kind!r:.40}; use: {', '.join(KINDS)}")
    return sorted(set(products)), [k for k in KINDS if k in kinds]


def _known(body: Any, allowed: Sequence[str]) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise InvalidArgument("the body must be a JSON object")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise InvalidArgument(f"unknown body field {unknown[0]!r:.40}; use {', '.join(allowed)}")
    return body


def new_subscription(org_id: str, body: Any) -> Subscription:
    """A subscription from a create body, or InvalidArgument naming the field."""
    body = _known(body, ("subId", "name", "productKeys", "kinds"))
    sub_id = body.get("subId") or f"sub-{ids.random_token(16)}"
    if not isinstance(sub_id, str) or not SUB_ID.fullmatch(sub_id):
        raise InvalidArgument("subId: 1 to 64 letters, digits, '_' or '-'")
    name = body.get("name", "")
    if not isinstance(name, str) or len(name) > MAX_NAME:
        raise InvalidArgument(f"name must be a string of at most {MAX_NAME} characters")
    products, kinds = _filter(body)
    return Subscription(
        subId=sub_id,
        orgId=org_id,
        name=name,
        productKeys=products,
        kinds=kinds,
        accessKey=ids.access_key(),
        accessSecret=ids.access_secret(),
        createdAt=ids.now_ms(),
    )


def new_webhook(org_id: str, body: Any) -> Webhook:
    body = _known(body, ("url", "productKeys", "kinds"))
    url = body.get("url")
    if not isinstance(url, str) or len(url) > MAX_URL:
        raise InvalidArgument(f"url is required: an http(s) URL of at most {MAX_URL} characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidArgument("url must be an http:// or https:// URL with a host")
    products, kinds = _filter(body)
    return Webhook(
        webhookId=f"wh-{ids.random_token(16)}",
        orgId=org_id,
        url=url,
        productKeys=products,
        kinds=kinds,
        secret=ids.random_token(32),
        createdAt=ids.now_ms(),
    )


def valid_group(name: str) -> bool:
    return GROUP.fullmatch(name) is not None


class StreamStore(Protocol):
    """Where subscriptions, their retained messages, offsets and webhooks are kept."""

    async def put_subscription(self, sub: Subscription) -> None: ...

    async def delete_subscription(self, sub_id: str) -> bool:
        """Remove it with its messages and offsets; False when there was none."""

    async def all_subscriptions(self) -> list[Subscription]: ...

    async def append_messages(self, rows: Sequence[StreamRow]) -> None:
        """In one transaction: a batch is retained whole or not at all."""

    async def read_messages(
        self, sub_id: str, partition: int, after: int, limit: int
    ) -> list[StreamRow]:
        """Retained messages of one partition with offsets above `after`, oldest first."""

    async def last_offsets(self) -> dict[tuple[str, int], int]:
        """The newest retained offset of each (subscription, partition)."""

    async def prune_messages(self, sub_id: str, partition: int, upto: int, before_ts: int) -> int:
        """Drop the partition's messages at or below offset `upto` or older than `before_ts`."""

    async def commit_offsets(self, sub_id: str, group: str, offsets: Mapping[int, int]) -> None:
        """Record a group's committed offset per partition (never moving one back)."""

    async def committed_offsets(self) -> dict[tuple[str, str, int], int]:
        """(subscription, group, partition) -> the last offset the group committed."""

    async def put_webhook(self, hook: Webhook) -> None: ...

    async def delete_webhook(self, webhook_id: str) -> bool: ...

    async def all_webhooks(self) -> list[Webhook]: ...
