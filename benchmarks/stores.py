"""The registry's two stores side by side, in one run: SQLite (the default) beside
PostgreSQL (a throwaway local server, fsync on), on the same figures.

- batchCreate: one call of 10,000 devices (the median of `--runs`);
- connect storm: 10,000 registered, EnOS-signed devices CONNECT, 100 in flight
  (benchmarks/devices.py's measure);
- QoS 1 posts: 1,000 devices post measurepoints one at a time, each waiting for its
  reply, which comes only once the post is stored (group commit);
- synchronous commands: `invokeService` with the call waiting for the device's reply,
  50 callers over 100 devices (benchmarks/commands.py's measure), with stock amqtt's
  bare request and reply over MQTT as the row to beat.

    .venv/bin/python benchmarks/stores.py [--devices 10000] [--post-devices 1000]
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import commands, devices
from benchmarks.common import create_devices, ratio, spare_the_collector
from simulators.launch import Gatehouse, Postgres, StockAmqtt
from simulators.platform import with_mandatory

STORES = ("sqlite", "postgresql")
TSL = {"properties": [{"identifier": "t", "dataType": {"type": "float", "specs": {}}}]}


@dataclass
class Figures:
    store: str
    batch_create_s: float | None = None
    connects_s: float | None = None
    connect_p99_ms: float | None = None
    qos1_posts_s: float | None = None
    qos1_p99_ms: float | None = None
    invokes_s: float | None = None
    invoke_p99_ms: float | None = None
    notes: list[str] = field(default_factory=list)


ROWS = [
    ("batch_create_s", "batchCreate {devices:,} (s)"),
    ("connects_s", "connect storm {devices:,} (conn/s)"),
    ("connect_p99_ms", "connect p99 (ms)"),
    ("qos1_posts_s", "QoS 1 posts x{post_devices:,} (/s)"),
    ("qos1_p99_ms", "QoS 1 post p99 (ms)"),
    ("invokes_s", "invokeService sync (calls/s)"),
    ("invoke_p99_ms", "invokeService p99 (ms)"),
]


@contextmanager
def gatehouse(workdir: Path, postgres: Postgres | None) -> Iterator[Gatehouse]:
    """A gatehouse on a new database of the store: its data directory's SQLite, or a
    new PostgreSQL database."""
    args: tuple[str, ...] = ("--log-level", "warning")
    if postgres is not None:
        args += ("--database", postgres.new_database())
    server = Gatehouse(workdir / "data", extra_args=args).start()
    try:
        yield server
    finally:
        server.stop()


def batch_create(workdir: Path, postgres: Postgres | None, count: int, runs: int) -> float:
    with gatehouse(workdir, postgres) as server:
        api = server.client()
        api("thing-models", "create", {"modelId": "bench", "tsl": TSL}).ok()
        seconds = []
        for run in range(runs):
            key = api(
                "products", "create", with_mandatory({"productName": f"p{run}", "modelId": "bench"})
            ).ok()
            bodies = [
                {"productKey": key, "deviceName": f"d{i}", "timezone": "+00:00"}
                for i in range(count)
            ]
            started = time.perf_counter()
            created = api("devices", "batchCreate", {"deviceList": bodies}).ok()
            seconds.append(time.perf_counter() - started)
            assert len(created) == count
    return round(statistics.median(seconds), 3)


def mqtt_figures(
    workdir: Path, postgres: Postgres | None, count: int, posts: bool, args: argparse.Namespace
) -> devices.Row:
    with gatehouse(workdir, postgres) as server:
        assert server.process is not None
        creds = devices.provision(server, count)
        return uvloop.run(
            devices.measure("gatehouse", server.mqtt_port, server.process.pid, creds, posts, args)
        )


def command_figures(
    workdir: Path, postgres: Postgres | None, args: argparse.Namespace
) -> commands.Row:
    with gatehouse(workdir, postgres) as server:
        api = server.client()
        api("thing-models", "create", {"modelId": "bench", "tsl": commands.TSL}).ok()
        pk = api(
            "products", "create", with_mandatory({"productName": "bench", "modelId": "bench"})
        ).ok()
        creds = [(pk, f"dev{i:04d}", f"secret{i:04d}") for i in range(args.command_devices)]
        create_devices(api, creds)
        return uvloop.run(commands.measure("gatehouse", server.mqtt_port, api, creds, args))


def stock_commands(workdir: Path, args: argparse.Namespace) -> commands.Row:
    stock = StockAmqtt(workdir).start()
    try:
        creds = [("pk", f"dev{i:04d}", f"secret{i:04d}") for i in range(args.command_devices)]
        return uvloop.run(commands.measure("amqtt", stock.port, None, creds, args))
    finally:
        stock.stop()


def run_store(store: str, postgres: Postgres | None, args: argparse.Namespace) -> Figures:
    figures = Figures(store)
    with tempfile.TemporaryDirectory() as tmp:
        figures.batch_create_s = batch_create(
            Path(tmp) / "batch", postgres, args.devices, args.runs
        )
    with tempfile.TemporaryDirectory() as tmp:
        storm = mqtt_figures(Path(tmp), postgres, args.devices, False, args)
    figures.connects_s, figures.connect_p99_ms = storm.connects_s, storm.connect_p99_ms
    with tempfile.TemporaryDirectory() as tmp:
        posted = mqtt_figures(Path(tmp), postgres, args.post_devices, True, args)
    figures.qos1_posts_s, figures.qos1_p99_ms = posted.qos1_msg_s, posted.qos1_p99_ms
    with tempfile.TemporaryDirectory() as tmp:
        invoked = command_figures(Path(tmp), postgres, args)
    figures.invokes_s, figures.invoke_p99_ms = invoked.invokes_s, invoked.p99_ms
    figures.notes = storm.notes + posted.notes + invoked.notes
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", default=",".join(STORES))
    parser.add_argument("--devices", type=int, default=10_000, help="batchCreate and storm")
    parser.add_argument("--post-devices", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=3, help="batchCreate calls")
    parser.add_argument("--post-seconds", type=float, default=5.0)
    parser.add_argument("--connect-deadline", type=float, default=90.0)
    parser.add_argument("--command-devices", type=int, default=100)
    parser.add_argument("--callers", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5.0, help="of synchronous commands")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/stores.json"))
    args = parser.parse_args()
    logging.getLogger("gmqtt").setLevel(logging.CRITICAL)
    spare_the_collector()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    results: list[Figures] = []
    for store in args.stores.split(","):
        postgres = Postgres().start() if store == "postgresql" else None
        try:
            results.append(run_store(store, postgres, args))
        finally:
            if postgres is not None:
                postgres.remove()
        print(f"{store}: done", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        stock = stock_commands(Path(tmp), args)

    print(f"{'':32}" + "".join(f"{f.store:>14}" for f in results) + f"{'stock amqtt':>14}")
    for key, title in ROWS:
        cells = "".join(f"{_cell(getattr(f, key)):>14}" for f in results)
        extra = {"invokes_s": stock.invokes_s, "invoke_p99_ms": stock.p99_ms}.get(key)
        title = title.format(devices=args.devices, post_devices=args.post_devices)
        print(f"{title:32}{cells}{_cell(extra) if extra is not None else '':>14}")
    ratios = {f"invokes_s_{f.store}_vs_stock": ratio(f.invokes_s, stock.invokes_s) for f in results}
    for key, value in ratios.items():
        print(f"{key}: {value}")
    for figures in results:
        for note in figures.notes:
            print(f"{figures.store}: {note}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "benchmark": "stores",
                "stores": [asdict(f) for f in results],
                "stock_amqtt_commands": asdict(stock),
                "ratios": ratios,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.json}")
    return 0


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


if __name__ == "__main__":
    raise SystemExit(main())
