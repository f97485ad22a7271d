"""Webhooks: each registered endpoint gets the organisation's messages as signed JSON
POSTs, from a queue and a task of its own.

A delivery carries up to `batch` messages: `{"webhookId", "deliveryId", "messages":
[...]}`. It is signed with HMAC-SHA256 under the webhook's secret over
`{timestamp}.{body}` (`X-Gatehouse-Timestamp`, `X-Gatehouse-Signature: sha256=<hex>`),
so a receiver can check both who sent it and that it is fresh. Any answer but 2xx, or
none within `timeout`, is a failure: the same delivery is retried after 1, 2, 4 ... up
to `max_backoff` seconds. Meanwhile new messages queue up to `queue` per endpoint, the
oldest dropped and counted. The last `log` attempts of each endpoint are kept for the
API to show.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import hmac
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from broker.streams.messages import AppMessage
from registry import ids
from registry.streams import Webhook

log = logging.getLogger("gatehouse.webhooks")

SIGNATURE_HEADER = "X-Gatehouse-Signature"
TIMESTAMP_HEADER = "X-Gatehouse-Timestamp"


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    queue: int = 10_000  # messages waiting per endpoint
    batch: int = 100  # messages per delivery
    timeout: float = 10.0  # seconds an endpoint has to answer
    max_backoff: float = 60.0  # seconds between retries, at most
    log: int = 100  # attempts kept per endpoint


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


@dataclass(slots=True)
class EndpointStats:
    delivered: int = 0  # messages the endpoint took
    deliveries: int = 0  # POSTs answered 2xx
    failures: int = 0  # attempts that failed
    dropped: int = 0  # messages dropped because the queue was full


@dataclass(slots=True)
class Endpoint:
    hook: Webhook
    config: WebhookConfig
    queue: collections.deque[AppMessage] = field(default_factory=collections.deque)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    attempts: collections.deque[dict[str, Any]] = field(default_factory=collections.deque)
    stats: EndpointStats = field(default_factory=EndpointStats)
    task: asyncio.Task[None] | None = None

    def put(self, message: AppMessage) -> None:
        if len(self.queue) >= self.config.queue:
            self.queue.popleft()
            self.stats.dropped += 1
        self.queue.append(message)
        self.ready.set()

    def record(self, attempt: dict[str, Any]) -> None:
        if len(self.attempts) >= self.config.log:
            self.attempts.popleft()
        self.attempts.append(attempt)


class Webhooks:
    def __init__(self, config: WebhookConfig | None = None) -> None:
        self.config = config or WebhookConfig()
        self.endpoints: dict[str, Endpoint] = {}
        self._http: httpx.AsyncClient | None = None

    def start(self, hooks: Iterable[Webhook]) -> None:
        # Redirects are not followed: the registered URL is the one that gets the data.
        self._http = httpx.AsyncClient(timeout=self.config.timeout, follow_redirects=False)
        for hook in hooks:
            self.add(hook)

    async def stop(self) -> None:
        for endpoint in list(self.endpoints.values()):
            await self._cancel(endpoint)
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def add(self, hook: Webhook) -> None:
        endpoint = self.endpoints[hook.webhookId] = Endpoint(hook, self.config)
        endpoint.task = asyncio.create_task(self._deliver(endpoint), name="gatehouse-webhook")

    async def remove(self, webhook_id: str) -> None:
        endpoint = self.endpoints.pop(webhook_id, None)
        if endpoint is not None:
            await self._cancel(endpoint)

    def of_org(self, org_id: str) -> list[Endpoint]:
        return [e for e in self.endpoints.values() if e.hook.orgId == org_id]

    def publish(self, messages: Iterable[AppMessage]) -> None:
        if not self.endpoints:
            return
        for message in messages:
            for endpoint in self.endpoints.values():
                hook = endpoint.hook
                if hook.orgId == message.org_id and hook.wants(message.product_key, message.kind):
                    endpoint.put(message)

    @staticmethod
    async def _cancel(endpoint: Endpoint) -> None:
        if endpoint.task is not None:
            endpoint.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await endpoint.task

    async def _deliver(self, endpoint: Endpoint) -> None:
        backoff = 1.0
        while True:
            if not endpoint.queue:
                endpoint.ready.clear()
                await endpoint.ready.wait()
            count = min(len(endpoint.queue), self.config.batch)
            batch = [endpoint.queue[i] for i in range(count)]
            delivery = f"dl-{ids.random_token(16)}"
            attempt = 0
            while True:
                attempt += 1
                if await self._post(endpoint, delivery, attempt, batch):
                    break
                await asyncio.sleep(backoff)  # the backoff is the behaviour here
                backoff = min(backoff * 2, self.config.max_backoff)
            backoff = 1.0
            # What was delivered leaves the queue, unless dropped from it meanwhile.
            sent = {id(m) for m in batch}
            while endpoint.queue and id(endpoint.queue[0]) in sent:
                endpoint.queue.popleft()
            endpoint.stats.delivered += len(batch)
            endpoint.stats.deliveries += 1

    async def _post(
        self, endpoint: Endpoint, delivery: str, attempt: int, batch: list[AppMessage]
    ) -> bool:
        assert self._http is not None
        hook = endpoint.hook
        body = orjson.dumps(
            {
                "webhookId": hook.webhookId,
                "deliveryId": delivery,
                "messages": [m.body for m in batch],
            }
        )
        timestamp = str(int(time.time() * 1000))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(hook.secret, timestamp, body),
            "X-Gatehouse-Delivery": delivery,
            "User-Agent": "gatehouse-webhooks",
        }
        started = time.monotonic()
        record: dict[str, Any] = {
            "deliveryId": delivery,
            "attempt": attempt,
            "messages": len(batch),
            "at": int(time.time() * 1000),
        }
        try:
            response = await self._http.post(hook.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            record.update(ok=False, status=None, error=f"{type(exc).__name__}: {exc}"[:200])
        else:
            ok = 200 <= response.status_code < 300
            record.update(ok=ok, status=response.status_code, error="" if ok else "not 2xx")
        record["durationMs"] = round((time.monotonic() - started) * 1000, 1)
        endpoint.record(record)
        if not record["ok"]:
            endpoint.stats.failures += 1
            if attempt == 1:  # once per delivery, not per retry
                log.warning(
                    "webhook %s: delivery %s failed (%s)",
                    hook.webhookId,
                    delivery,
                    record["error"] or record["status"],
                )
        return bool(record["ok"])
