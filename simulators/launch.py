"""Launchers for the brokers that tests and benchmarks run against: a real `gatehouse
serve` and a stock amqtt 0.12.1, each in a subprocess on free loopback ports.

Both are started by command, so this module imports nothing of gatehouse's (the
simulators' rule: only `broker.protocol`); gatehouse is reached over HTTP and MQTT
like any other platform. `Api` keeps each reply's status and whole envelope, for
callers that assert on them.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

API = "/connect-service/v2.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stop_process(process: subprocess.Popen[bytes], signal_number: int = signal.SIGTERM) -> None:
    """Ask a broker to stop, and kill it if it has not within ten seconds."""
    if process.poll() is not None:
        return
    process.send_signal(signal_number)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


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


@dataclass
class Reply:
    status: int
    body: dict[str, Any]

    @property
    def code(self) -> int:
        code: int = self.body["code"]
        return code

    @property
    def data(self) -> Any:
        assert self.status == 200 and self.code == 0, f"expected success, got {self}"
        return self.body["data"]

    def ok(self) -> Any:
        """Assert success and return the data: for calls made for their effect."""
        return self.data

    @property
    def msg(self) -> str:
        msg: str = self.body["msg"]
        return msg


class Api:
    """Raw HTTP calls that keep the status and the whole envelope, for assertions."""

    def __init__(self, url: str, key: str, secret: str, org_id: str | None) -> None:
        self.http = httpx.Client(base_url=url, auth=(key, secret), timeout=60)
        self.org_id = org_id

    def __call__(self, resource: str, action: str, body: Any = None, **query: Any) -> Reply:
        params = {"action": action, **query}
        if self.org_id and "orgId" not in params:
            params["orgId"] = self.org_id
        response = self.http.post(f"{API}/{resource}", params=params, json=body)
        return Reply(response.status_code, response.json())


@dataclass
class Gatehouse:
    """`gatehouse serve` in a subprocess, with a fresh organisation and access key."""

    data_dir: Path
    org_id: str = field(default_factory=lambda: "org" + secrets.token_hex(4))
    access_key: str = field(default_factory=lambda: "ak" + secrets.token_hex(8))
    access_secret: str = field(default_factory=lambda: secrets.token_hex(16))
    # 0: the server binds any free port and reports it (DATA_DIR/ports.json), so no
    # other process can take the port between choosing it and binding it.
    http_port: int = 0
    mqtt_port: int = 0
    # TLS and the subscription server take 0 as "none": they get a port chosen here.
    mqtts_port: int = field(default_factory=free_port)
    subscribe_port: int = field(default_factory=free_port)  # EnOS data subscription
    extra_args: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "GATEHOUSE_ORG_ID": self.org_id,
            "GATEHOUSE_ACCESS_KEY": self.access_key,
            "GATEHOUSE_ACCESS_SECRET": self.access_secret,
            "GATEHOUSE_URL": self.url,
        }

    def start(self, timeout: float = 20.0) -> Gatehouse:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.log_path is None:  # one log for all its runs: a restart appends to it
            self.log_path = self.data_dir.parent / f"gatehouse-{secrets.token_hex(4)}.log"
        ports_file = self.data_dir / PORTS_FILE
        ports_file.unlink(missing_ok=True)  # a previous run's
        command = [
            sys.executable,
            "-m",
            "broker.cli",
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--http-port",
            str(self.http_port),
            "--mqtt-port",
            str(self.mqtt_port),
            "--mqtts-port",
            str(self.mqtts_port),
            "--subscribe-port",
            str(self.subscribe_port),
            *self.extra_args,
        ]
        with self.log_path.open("ab") as log:
            # Our own CLI with our own arguments.
            self.process = subprocess.Popen(  # noqa: S603
                command, env=self.env(), stdout=log, stderr=log
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gatehouse exited early:\n{self.log()}")
            if not ports_file.exists():
                time.sleep(0.05)
                continue
            bound = json.loads(ports_file.read_text())
            self.http_port, self.mqtt_port = bound["http"], bound["mqtt"]
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"gatehouse did not answer within {timeout} s:\n{self.log()}")

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
        self.process = None

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path and self.log_path.exists() else ""

    def client(self, key: str | None = None, secret: str | None = None) -> Api:
        return Api(self.url, key or self.access_key, secret or self.access_secret, self.org_id)


PORTS_FILE = "ports.json"  # what `gatehouse serve` writes once it has bound its ports


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
        command = [str(Path(sys.executable).with_name("amqtt")), "-c", str(path)]
        with (self.workdir / f"amqtt-{self.port}.log").open("ab") as log:
            # amqtt's own command beside this interpreter, with our config.
            self.process = subprocess.Popen(command, stdout=log, stderr=log)  # noqa: S603
        wait_for_port(self.port, self.process, timeout)
        return self

    def stop(self) -> None:
        # Killed: stock amqtt takes five seconds to shut down, and nothing it would do
        # then is under test (a run of tests restarts it dozens of times).
        if self.process is not None:
            stop_process(self.process, signal.SIGKILL)


class Postgres:
    """A throwaway PostgreSQL cluster in a directory of its own, on a free loopback port.

    Built with the server's own `initdb` and `pg_ctl` (Debian's postgresql package, under
    /usr/lib/postgresql/N/bin); run as an unprivileged user when started by root, since
    PostgreSQL refuses to run as root. Only trust logins from 127.0.0.1 as `gatehouse`.
    """

    USER = "gatehouse"

    def __init__(self, workdir: Path | None = None, *, durable: bool = True) -> None:
        # Not under pytest's root-only temporary directory: the server's user must reach it.
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="gatehouse-pg-"))
        self.data = self.workdir / "cluster"
        self.port = free_port()
        self.durable = durable  # fsync; off only where a machine crash is not under test
        self._databases = 0

    @staticmethod
    def binaries() -> Path:
        found = sorted(
            Path("/usr/lib/postgresql").glob("*/bin/initdb"),
            key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
        )
        if not found:
            raise RuntimeError(
                "PostgreSQL is not installed (apt-get install postgresql): no"
                " /usr/lib/postgresql/*/bin/initdb"
            )
        return found[-1].parent

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run(  # noqa: S603 - the server's own tools, with our arguments
            [*prefix, *command], check=True, capture_output=True, timeout=120
        )

    def start(self) -> Postgres:
        """Create the cluster if it is new, then start the server and wait for it."""
        bin_dir = self.binaries()
        if os.geteuid() == 0:
            shutil.chown(self.workdir, "postgres")
        if not self.data.exists():
            self._run(
                str(bin_dir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                self.USER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            )
        options = (
            f"-p {self.port} -k {self.workdir} -c listen_addresses=127.0.0.1"
            f" -c max_connections=200 -c fsync={'on' if self.durable else 'off'}"
        )
        self._run(
            str(bin_dir / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.workdir / "server.log"),
            "-w",
            "start",
        )
        return self

    def stop(self, mode: str = "fast") -> None:
        """`fast` shuts down cleanly; `immediate` is a crash (recovery on the next start)."""
        if (self.data / "postmaster.pid").exists():
            self._run(str(self.binaries() / "pg_ctl"), "-D", str(self.data), "-m", mode, "stop")

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.USER}@127.0.0.1:{self.port}/{database}"

    def new_database(self, prefix: str = "gatehouse") -> str:
        """A new empty database; returns its URL."""
        self._databases += 1
        name = f"{prefix}_{os.getpid()}_{self._databases}_{secrets.token_hex(3)}"
        subprocess.run(  # noqa: S603 - the server's own tool
            [
                str(self.binaries() / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                self.USER,
                name,
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        return self.url(name)
