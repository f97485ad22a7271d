"""The application side of `gatehouse serve`, built and stopped in one place: the hub on
the write-behind, the subscription server, the command results and the metrics."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from broker.api.metrics import Metrics, Sources
from broker.gate import Gate
from broker.gate.writer import Note
from broker.streams.hub import StreamHub, StreamsConfig
from broker.streams.lifecycle import LifecycleTopics
from broker.streams.subscribe_server import SubscribeConfig, SubscribeServer
from broker.streams.subscriptions import RetentionConfig
from registry import Command
from registry.streams import StreamStore

log = logging.getLogger("gatehouse.streams")


@dataclass(frozen=True, slots=True)
class ApplicationsConfig:
    host: str = "127.0.0.1"
    subscribe_port: int = 9001  # 0: no subscription server
    retention: RetentionConfig = field(default_factory=RetentionConfig)


def command_note(command: Command) -> Note:
    """A command's result as the streams carry it."""
    view = command.view()
    return Note(
        command.productKey,
        command.deviceKey,
        command.finishedAt or command.createdAt,
        "commands",
        {k: v for k, v in view.items() if k not in ("productKey", "deviceKey")},
    )


class Applications:
    def __init__(self, store: StreamStore, gate: Gate, config: ApplicationsConfig) -> None:
        self.gate = gate
        self.config = config
        self.hub = StreamHub(store, gate.cache, StreamsConfig(retention=config.retention))
        self.metrics = Metrics(Sources(gate=gate, hub=self.hub))
        # Asked at each send: the broker's links are bound to the gate after this.
        self.lifecycle = LifecycleTopics(lambda: gate.presence.links)
        self.hub.taps.append(self.lifecycle)
        self.server: SubscribeServer | None = None
        if config.subscribe_port:
            self.server = SubscribeServer(
                self.hub.subscriptions, SubscribeConfig(config.host, config.subscribe_port)
            )
            self.metrics.sources.subscribe = self.server

    async def start(self) -> None:
        """After the gate has started, before the broker accepts anyone."""
        await self.hub.start(self.gate.writer)
        self.gate.writer.observers.append(self.metrics.committed)
        self.gate.commands.on_finished = self._command_finished

    def _command_finished(self, command: Command) -> None:
        self.gate.writer.note(command_note(command))

    async def listen(self) -> None:
        """Open the subscription port; OSError if it cannot be bound."""
        if self.server is not None:
            await self.server.start()

    @property
    def port(self) -> int:
        """The subscription port it listens on; 0 for none."""
        return self.server.port if self.server is not None else 0

    async def stop(self) -> None:
        """After the gate has stopped: its last batch has reached the streams."""
        if self.server is not None:
            await self.server.stop()
        self.gate.commands.on_finished = None
        if self.metrics.committed in self.gate.writer.observers:
            self.gate.writer.observers.remove(self.metrics.committed)
        await self.hub.stop(self.gate.writer)
