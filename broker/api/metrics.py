"""`GET /metrics`: gatehouse's figures in Prometheus's text format (prometheus-client).

Nothing here runs on a device's path. Counts of messages by route and reply code and
the latency from receipt to storage come from the write-behind's committed batches
(each uplink's log row carries the time it was received); everything else is read
from the live objects when Prometheus scrapes. Guarded like the admin API: HTTP Basic
auth with the admin organisation's key, since the figures span every organisation.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from broker.api.envelope import error
from broker.gate.writer import CommittedBatch
from broker.protocol import parse_device_topic
from registry import Forbidden, Organization, RegistryError

Authenticate = Callable[[Request], Awaitable[Organization]]
# Seconds from a PUBLISH's receipt to its batch's commit: the wait before the answer.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass
class Sources:
    """The running objects the figures are read from (any may be absent)."""

    gate: Any = None  # broker.gate.Gate
    mqtt: Any = None  # broker.mqtt.MqttBroker
    hub: Any = None  # broker.streams.hub.StreamHub
    subscribe: Any = None  # broker.streams.subscribe_server.SubscribeServer


def route_of(topic: str) -> str:
    """A topic's function with the ids taken out: `thing/event/{id}/post`, `other`."""
    parsed = parse_device_topic(topic)
    if parsed is None:
        return "other"
    rest = parsed.rest
    if rest.startswith("thing/event/") and rest.endswith("/post") and rest.count("/") == 3:
        rest = rest if rest == "thing/event/property/post" else "thing/event/{id}/post"
    elif rest.startswith("thing/service/") and rest.endswith("_reply"):
        rest = "thing/service/{id}_reply"
    elif parsed.namespace != "sys" or len(rest) > 64:
        return "other"
    return f"{parsed.namespace}/{rest}"


class Metrics:
    def __init__(self, sources: Sources) -> None:
        self.sources = sources
        self.registry = CollectorRegistry(auto_describe=True)
        self.messages = Counter(
            "gatehouse_messages",
            "Device uplinks stored, by route and the reply code they got",
            ["route", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "gatehouse_uplink_stored_seconds",
            "Seconds from receiving an uplink to the commit of the batch that stored it",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.commands = Counter(
            "gatehouse_commands_finished",
            "Commands ended, by the state they ended in",
            ["state"],
            registry=self.registry,
        )
        self.registry.register(_Live(sources))
        self._routes: dict[str, str] = {}

    async def committed(self, batch: CommittedBatch) -> None:
        """A write-behind observer: count what the batch stored."""
        now_ms = time.time() * 1000
        counts: collections.Counter[tuple[str, str]] = collections.Counter()
        for _pk, _dk, ts, kind, topic, _payload, reply_code, _detail in batch.log:
            if kind != "up":
                continue
            route = self._routes.get(topic)
            if route is None:
                route = route_of(topic)
                if len(self._routes) < 100_000:
                    self._routes[topic] = route
            counts[(route, "none" if reply_code is None else str(reply_code))] += 1
            self.latency.observe(max(now_ms - ts, 0) / 1000)
        for (route, code), count in counts.items():
            self.messages.labels(route, code).inc(count)
        for note in batch.notes:
            if note.kind == "commands":
                self.commands.labels(str(note.data.get("state", ""))).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Live(Collector):
    """Figures read from the running objects at scrape time."""

    def __init__(self, sources: Sources) -> None:
        self.sources = sources

    def collect(self) -> Iterator[Metric]:
        yield from self._gate()
        yield from self._mqtt()
        yield from self._streams()

    def _gate(self) -> Iterator[Metric]:
        gate = self.sources.gate
        if gate is None:
            return
        connected = GaugeMetricFamily(
            "gatehouse_devices_connected",
            "Devices online, by dialect and kind (direct connection or sub-device)",
            labels=["dialect", "kind"],
        )
        dialects = collections.Counter(d.name for d in gate.presence.dialects.values())
        for dialect, count in sorted(dialects.items()):
            connected.add_metric([dialect, "direct"], count)
        connected.add_metric(["", "sub-device"], gate.presence.sessions.online)
        yield connected
        admitted = CounterMetricFamily(
            "gatehouse_connects", "CONNECTs by outcome", labels=["outcome"]
        )
        admitted.add_metric(["admitted"], gate.stats.admitted)
        admitted.add_metric(["refused"], gate.stats.refused)
        yield admitted
        reasons = getattr(gate, "refusals", None)
        if reasons is not None:
            refusals = CounterMetricFamily(
                "gatehouse_connect_refusals", "CONNECTs refused, by reason", labels=["reason"]
            )
            for reason, count in sorted(reasons.items()):
                refusals.add_metric([reason], count)
            yield refusals
        writer = gate.writer
        pending = GaugeMetricFamily(
            "gatehouse_writer_pending", "Rows waiting for the next batch", labels=["buffer"]
        )
        for name, buffer in (
            ("presence", writer._presence),
            ("log", writer._log),
            ("latest", writer._latest),
        ):
            pending.add_metric([name], len(buffer))
        yield pending
        stats = writer.stats
        for name, help_text, value in (
            ("gatehouse_writer_flushes", "Batches committed", stats.flushes),
            ("gatehouse_writer_rows", "Rows committed", stats.rows),
            ("gatehouse_writer_failures", "Batches the store could not write", stats.failures),
            ("gatehouse_writer_dropped", "Rows dropped from full buffers", stats.dropped_log),
            (
                "gatehouse_writer_flush_seconds",
                "Seconds spent committing batches",
                stats.flush_seconds,
            ),
        ):
            yield CounterMetricFamily(name, help_text, value=value)
        states = collections.Counter(c.state for c in gate.commands._open.values())
        open_commands = GaugeMetricFamily(
            "gatehouse_commands_open", "Commands not ended yet, by state", labels=["state"]
        )
        for state in ("pending", "sent"):
            open_commands.add_metric([state], states.get(state, 0))
        yield open_commands

    def _mqtt(self) -> Iterator[Metric]:
        mqtt = self.sources.mqtt
        core = mqtt.stats if mqtt is not None else None
        if core is None:
            return
        family = CounterMetricFamily(
            "gatehouse_mqtt_packets", "What the MQTT core did with PUBLISHes", labels=["event"]
        )
        for name in (
            "routed",
            "delivered",
            "refused_publish",
            "dropped_slow",
            "dropped_queue",
            "taken_over",
            "oversized",
            "refused_queued",
        ):
            family.add_metric([name], getattr(core, name, 0))
        yield family

    def _streams(self) -> Iterator[Metric]:
        hub = self.sources.hub
        if hub is None:
            return
        kinds = CounterMetricFamily(
            "gatehouse_app_messages", "Application messages made, by kind", labels=["kind"]
        )
        for kind, count in sorted(hub.by_kind.items()):
            kinds.add_metric([kind], count)
        yield kinds
        backlog = GaugeMetricFamily(
            "gatehouse_subscription_backlog",
            "Messages retained that the slowest consumer group has not committed",
            labels=["sub_id"],
        )
        retained = CounterMetricFamily(
            "gatehouse_subscription_messages", "Messages retained", labels=["sub_id"]
        )
        delivered = CounterMetricFamily(
            "gatehouse_subscription_delivered", "Messages given to consumers", labels=["sub_id"]
        )
        consumers = GaugeMetricFamily(
            "gatehouse_subscription_consumers", "Consumers connected", labels=["sub_id"]
        )
        for sub_id, held in sorted(hub.subscriptions.logs.items()):
            backlog.add_metric([sub_id], held.backlog())
            retained.add_metric([sub_id], held.appended)
            delivered.add_metric([sub_id], held.delivered)
            consumers.add_metric([sub_id], sum(len(g.members) for g in held.groups.values()))
        yield from (backlog, retained, delivered, consumers)
        yield CounterMetricFamily(
            "gatehouse_subscription_pruned",
            "Retained messages dropped by the retention bounds",
            value=hub.subscriptions.pruned,
        )
        names = ("deliveries", "failures", "dropped", "delivered")
        helps = {
            "deliveries": "Webhook POSTs answered 2xx",
            "failures": "Webhook delivery attempts that failed",
            "dropped": "Messages dropped from a full webhook queue",
            "delivered": "Messages webhooks took",
        }
        families = {
            n: CounterMetricFamily(f"gatehouse_webhook_{n}", helps[n], labels=["webhook_id"])
            for n in names
        }
        queued = GaugeMetricFamily(
            "gatehouse_webhook_queued", "Messages waiting for a webhook", labels=["webhook_id"]
        )
        for webhook_id, endpoint in sorted(hub.webhooks.endpoints.items()):
            for name in names:
                families[name].add_metric([webhook_id], getattr(endpoint.stats, name))
            queued.add_metric([webhook_id], len(endpoint.queue))
        yield from families.values()
        yield queued
        live = hub.live
        yield GaugeMetricFamily(
            "gatehouse_live_streams", "Live (SSE) streams open", value=len(live.listeners)
        )
        yield CounterMetricFamily(
            "gatehouse_live_dropped",
            "Messages dropped from live streams that fell behind",
            value=live.dropped + sum(listener.dropped for listener in live.listeners),
        )


def metrics_endpoint(
    metrics: Metrics, authenticate: Authenticate
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            org = await authenticate(request)
            if not org.admin:
                raise Forbidden("only the admin organisation reads the metrics")
        except RegistryError as exc:
            headers = {"WWW-Authenticate": 'Basic realm="gatehouse"'} if exc.status == 401 else None
            return error(exc.status, exc.code, exc.msg, headers)
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return endpoint
