"""TLS connect storms on gatehouse and on stock amqtt 0.12.1 with the same TLS settings
(the same server certificate and CA, client certificates verified when presented).

For each broker and mode, N devices CONNECT over TLS, 50 in flight:
- `server-tls`: the server authenticates itself; devices send no certificate;
- `client-certs`: every device presents its own certificate from the CA. On gatehouse
  these are devices of a biDirectionalAuth product: the certificate must name the
  device and not be revoked, and the EnOS sign is checked as well.
Gatehouse's certificates are issued by its own CA (loaded from its data directory),
stock amqtt's by a CA made for the run.

    .venv/bin/python benchmarks/tls.py [--devices 500]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import ssl
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import gmqtt
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (
    BENCH_TSL,
    Credentials,
    bounded,
    create_devices,
    percentile,
    ratio_of,
    report,
    spare_the_collector,
)
from broker.protocol import enos_credentials
from certs import CertificateAuthority, make_key_and_csr
from simulators.launch import Gatehouse, StockAmqtt
from simulators.platform import with_mandatory

MQTT_311 = 4
IN_FLIGHT = 50
MODES = ("server-tls", "client-certs")


@dataclass
class Row:
    broker: str
    mode: str
    devices: int
    connected: int = 0
    connects_s: float | None = None
    connect_p99_ms: float | None = None
    notes: list[str] = field(default_factory=list)


COLUMNS = [
    ("broker", "broker"),
    ("mode", "mode"),
    ("devices", "devices"),
    ("connects_s", "connects/s"),
    ("connect_p99_ms", "CONNECT p99"),
]


@dataclass
class Target:
    port: int
    ca_file: Path
    devices: list[Credentials]
    contexts: list[ssl.SSLContext]


# (ProductKey, DeviceKey, CSR) -> the certificate's PEM
Issuer = Callable[[str, str, str], str]


def client_contexts(
    issue: Issuer, ca_file: Path, devices: list[Credentials], workdir: Path, certs: bool
) -> list[ssl.SSLContext]:
    contexts = []
    for pk, dk, _ in devices:
        ctx = ssl.create_default_context(cafile=str(ca_file))
        if certs:
            key_pem, csr_pem = make_key_and_csr(pk, dk)
            cert_path, key_path = workdir / f"{dk}.pem", workdir / f"{dk}.key"
            cert_path.write_text(issue(pk, dk, csr_pem))
            key_path.write_text(key_pem)
            ctx.load_cert_chain(str(cert_path), str(key_path))
        contexts.append(ctx)
    return contexts


@contextmanager
def running(broker: str, mode: str, workdir: Path, count: int) -> Iterator[Target]:
    certs = mode == "client-certs"
    if broker == "amqtt":
        ca_dir = workdir / "ca"
        ca = CertificateAuthority.load_or_create(ca_dir)
        server_cert, server_key = ca.server_files(ca_dir, ["127.0.0.1"])
        tls = {
            "certfile": str(server_cert),
            "keyfile": str(server_key),
            "cafile": str(ca_dir / "ca.pem"),
        }
        stock = StockAmqtt(workdir, tls=tls)
        stock.start()
        devices = [("benchpk", f"dev{i:05d}", f"secret{i:05d}") for i in range(count)]
        try:
            yield Target(
                stock.tls_port,
                ca_dir / "ca.pem",
                devices,
                client_contexts(
                    lambda pk, dk, csr: ca.issue(csr, pk, dk, 30).cert_pem,
                    ca_dir / "ca.pem",
                    devices,
                    workdir,
                    certs,
                ),
            )
        finally:
            stock.stop()
        return
    server = Gatehouse(workdir / "data", extra_args=("--log-level", "warning")).start()
    try:
        api = server.client()
        api("thing-models", "create", {"modelId": "bench", "tsl": BENCH_TSL}).ok()
        body = {"productName": "bench", "modelId": "bench", "biDirectionalAuth": certs}
        pk = api("products", "create", with_mandatory(body)).ok()
        devices = [(pk, f"dev{i:05d}", f"secret{i:05d}") for i in range(count)]
        create_devices(api, devices)
        ca_file = server.data_dir / "ca" / "ca.pem"

        def apply(pk: str, dk: str, csr: str) -> str:
            # Through the API: admission takes only the certificates issued to the device.
            query = {"productKey": pk, "deviceKey": dk}
            cert: str = api("device-certificates", "apply", {"csr": csr}, **query).ok()["cert"]
            return cert

        yield Target(
            server.mqtts_port,
            ca_file,
            devices,
            client_contexts(apply, ca_file, devices, workdir, certs),
        )
    finally:
        server.stop()


async def measure(broker: str, mode: str, target: Target, deadline_s: float) -> Row:
    row = Row(broker, mode, len(target.devices))
    clients: list[Any] = []
    latencies: list[float] = []

    async def join(index: int) -> None:
        pk, dk, secret = target.devices[index]
        creds = enos_credentials(pk, dk, secret, str(int(time.time() * 1000)))
        client = gmqtt.Client(creds.client_id)
        client.set_auth_credentials(creds.username, creds.password)
        started = time.perf_counter()
        await client.connect(
            "127.0.0.1", target.port, ssl=target.contexts[index], keepalive=300, version=MQTT_311
        )
        latencies.append((time.perf_counter() - started) * 1000)
        clients.append(client)

    started = time.monotonic()
    row.connected = await bounded(
        [partial(join, i) for i in range(len(target.devices))],
        started + deadline_s,
        IN_FLIGHT,
    )
    elapsed = time.monotonic() - started
    row.connects_s = round(row.connected / elapsed)
    if latencies:
        row.connect_p99_ms = round(percentile(sorted(latencies), 0.99), 1)
    if row.connected < len(target.devices):
        row.notes.append(f"{row.connected} of {len(target.devices)} connected in {deadline_s} s")
    for client in clients:
        with suppress(Exception):
            await asyncio.wait_for(client.disconnect(), 5)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--deadline", type=float, default=60.0)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/tls.json"))
    args = parser.parse_args()
    logging.getLogger("gmqtt").setLevel(logging.CRITICAL)
    spare_the_collector()
    rows: list[Row] = []
    for mode in MODES:
        for broker in ("amqtt", "gatehouse"):
            with (
                tempfile.TemporaryDirectory() as tmp,
                running(broker, mode, Path(tmp), args.devices) as target,
            ):
                rows.append(uvloop.run(measure(broker, mode, target, args.deadline)))

    def find(broker: str, mode: str) -> Row | None:
        return next((r for r in rows if (r.broker, r.mode) == (broker, mode)), None)

    ratios: dict[str, float | None] = {}
    for mode in MODES:
        gh, stock = find("gatehouse", mode), find("amqtt", mode)
        ratios[f"connects_s_gatehouse_vs_stock_{mode}"] = ratio_of(
            gh, stock, lambda r: r.connects_s
        )
    report("tls", rows, COLUMNS, ratios, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
