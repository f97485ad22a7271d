"""The two broker cores the broker-core tests compare: gatehouse's and stock amqtt 0.12.1.

Stock amqtt runs from its own `amqtt` command, configured to refuse clients without a
username; gatehouse runs `gatehouse serve --allow-anonymous`, which refuses clients with
credentials it does not know. Each core says which login it admits and which it
refuses, so one test body exercises both.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.mqtt_client import Client
from tests.server import Gatehouse, free_port

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


class StockAmqtt:
    """`amqtt -c config` in a subprocess: the broker exactly as amqtt ships it."""

    def __init__(
        self,
        workdir: Path,
        plugins: dict[str, Any] | None = None,
        tls: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.plugins = plugins
        # With `tls` ({"certfile", "keyfile", "cafile"}), a TLS listener on `tls_port`.
        self.tls = tls
        self.tls_port = free_port() if tls is not None else 0
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> StockAmqtt:
        config: dict[str, Any] = {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}}
        }
        if self.tls is not None:
            config["listeners"]["tls"] = {
                "type": "tcp",
                "bind": f"127.0.0.1:{self.tls_port}",
                "ssl": True,
                **self.tls,
            }
        if self.plugins is not None:
            config["plugins"] = self.plugins
        path = self.workdir / f"amqtt-{self.port}.json"
        path.write_text(json.dumps(config))  # JSON is YAML, which amqtt reads
        log = (self.workdir / f"amqtt-{self.port}.log").open("ab")
        command = [str(Path(sys.executable).with_name("amqtt")), "-c", str(path)]
        self.process = subprocess.Popen(command, stdout=log, stderr=log)
        wait_for_port(self.port, self.process, timeout)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"broker exited early with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listened on port {port} within {timeout} s")


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
