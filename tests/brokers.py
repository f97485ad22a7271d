"""The two broker cores the broker-core tests compare: gatehouse's and stock amqtt 0.12.1.

Stock amqtt runs from its own `amqtt` command, configured to refuse clients without a
username; gatehouse runs `gatehouse serve --allow-anonymous`, which refuses clients with
credentials it does not know. Each core says which login it admits and which it
refuses, so one test body exercises both. The launchers themselves live in `simulators.launch`,
shared with the benchmarks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulators.launch import Gatehouse, StockAmqtt, wait_for_port
from tests.mqtt_client import Client

__all__ = [
    "GATEHOUSE",
    "STOCK",
    "Core",
    "StockAmqtt",
    "gatehouse_core",
    "stock_core",
    "wait_for_port",
]

STOCK = "amqtt"
GATEHOUSE = "gatehouse"


@dataclass
class Core:
    name: str
    port: int
    admitted: dict[str, Any] = field(default_factory=dict)  # username/password it accepts
    refused: dict[str, Any] = field(default_factory=dict)  # username/password it refuses

    def client(self, client_id: str, **options: Any) -> Client:
        return Client(self.port, client_id, **self.admitted, **options)

    def impostor(self, client_id: str, **options: Any) -> Client:
        return Client(self.port, client_id, **self.refused, **options)


def stock_core(workdir: Path) -> tuple[StockAmqtt, Core]:
    # amqtt's AnonymousAuthPlugin with allow_anonymous off admits any named client
    # and refuses the nameless.
    plugins = {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": False}}
    server = StockAmqtt(workdir, plugins).start()
    core = Core(STOCK, server.port, admitted={"username": "device"}, refused={})
    return server, core


def gatehouse_core(workdir: Path, *extra_args: str) -> tuple[Gatehouse, Core]:
    server = Gatehouse(workdir / "data", extra_args=("--allow-anonymous", *extra_args)).start()
    refused = {"username": "device", "password": "not-its-secret"}
    core = Core(GATEHOUSE, server.mqtt_port, admitted={}, refused=refused)
    return server, core
