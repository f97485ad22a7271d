"""`gatehouse load` against a fresh `gatehouse serve`, the runner's CPU beside the
broker's, to show the runner is not the bottleneck it measures; then the runner's own
ceiling against a broker that is not the bottleneck either: Debian's mosquitto.

    .venv/bin/python benchmarks/load.py [--devices 10000] [--rate 1000] [--duration 30]
        [--ramp 1000] [--ceiling-devices N] [--ceiling-rate 5000] [--no-ceiling]

The ceiling: the runner provisions through gatehouse's API as usual, but its devices
connect to mosquitto (anonymous, on a loopback port, started and stopped here), each
subscribed to its reply topic, and a responder process answers every post there, as a
platform would. The runner's CPU seconds of each phase give its connects/s and posts/s
per core. mosquitto is installed with apt-get when it is missing (as root only).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simulators.launch import Gatehouse, free_port, stop_process, wait_for_port

POST_TOPIC = "/sys/+/+/thing/measurepoint/post"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_load(server: Gatehouse, out: Path, *options: str) -> dict[str, Any]:
    """`gatehouse load OPTIONS` against `server`'s API; its report."""
    command = [sys.executable, "-m", "broker.cli", "load", "--url", server.url, "--no-progress"]
    result = subprocess.run(  # noqa: S603 - our own CLI, our arguments
        [*command, *options, "--report", str(out)],
        env=server.env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=3600,
    )
    print(result.stdout)
    if result.returncode != 0:
        print(result.stderr[-2000:], file=sys.stderr)
        raise SystemExit(f"gatehouse load exited {result.returncode}")
    report: dict[str, Any] = json.loads(out.read_text())
    return report


def against_gatehouse(args: argparse.Namespace, server: Gatehouse, tmp: Path) -> dict[str, Any]:
    assert server.process is not None
    broker_before, started = cpu_seconds(server.process.pid), time.monotonic()
    report = run_load(
        server, tmp / "gatehouse.json",
        "--devices", str(args.devices), "--rate", str(args.rate),
        "--duration", str(args.duration), "--ramp", str(args.ramp),
        "--mqtt-port", str(server.mqtt_port),
    )  # fmt: skip
    elapsed = time.monotonic() - started
    broker_cpu = 100 * (cpu_seconds(server.process.pid) - broker_before) / elapsed
    report["broker_cpu_percent"] = round(broker_cpu, 1)
    print(f"broker CPU         {report['broker_cpu_percent']}% of one core (same period)\n")
    return report


def mosquitto_binary() -> str:
    """Debian's mosquitto, installed with apt-get when missing (root only)."""
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin")
    if found:
        return found
    if os.geteuid() != 0:
        raise SystemExit("mosquitto is missing; as root: apt-get install -y mosquitto")
    print("benchmarks/load.py: installing Debian's mosquitto (apt-get, as root)", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)  # noqa: S607
    subprocess.run(["apt-get", "install", "-y", "-qq", "mosquitto"], check=True, env=env)  # noqa: S607
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin")
    if not found:
        raise SystemExit("apt-get installed mosquitto, but no mosquitto binary was found")
    return found


@contextmanager
def mosquitto(tmp: Path) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """mosquitto on a free loopback port, anonymous clients allowed, nothing persisted."""
    port = free_port()
    config = tmp / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "max_connections -1\nmax_queued_messages 10000\nlog_dest stderr\nlog_type error\n"
    )
    process = subprocess.Popen([mosquitto_binary(), "-c", str(config)])  # noqa: S603
    try:
        wait_for_port(port, process, timeout=20)
        yield port, process
    finally:
        stop_process(process)


@contextmanager
def responder(port: int) -> Iterator[subprocess.Popen[bytes]]:
    """The platform's side on mosquitto: a process answering each post with a 200."""
    process = subprocess.Popen(  # noqa: S603 - this script, our arguments
        [sys.executable, __file__, "--respond", str(port)], stdout=subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        if process.stdout.readline().strip() != b"ready":  # subscribed
            raise SystemExit("the responder did not start")
        yield process
    finally:
        stop_process(process)


async def respond(port: int) -> None:
    import gmqtt
    import orjson

    client = gmqtt.Client(f"bench-responder-{os.getpid()}")

    def on_message(client: Any, topic: str, payload: bytes, qos: int, props: Any) -> int:
        try:
            request_id = orjson.loads(payload)["id"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return 0
        reply = {"id": request_id, "code": 200, "data": None}
        client.publish(topic + "_reply", orjson.dumps(reply), qos=0)
        return 0

    def on_subscribe(*_: Any) -> None:
        print("ready", flush=True)

    client.on_message = on_message
    client.on_subscribe = on_subscribe
    await client.connect("127.0.0.1", port, version=4)
    client.subscribe(POST_TOPIC, qos=0)
    await asyncio.Event().wait()  # until stopped


def ceiling(args: argparse.Namespace, server: Gatehouse, tmp: Path) -> dict[str, Any]:
    with mosquitto(tmp) as (port, broker), responder(port) as answering:
        before = {p.pid: cpu_seconds(p.pid) for p in (broker, answering)}
        started = time.monotonic()
        report = run_load(
            server, tmp / "ceiling.json",
            "--devices", str(args.ceiling_devices or args.devices),
            "--rate", str(args.ceiling_rate), "--duration", str(args.duration),
            "--ramp", "1000000", "--qos", "0", "--subscribe-replies", "--cleanup",
            "--mqtt-port", str(port),
        )  # fmt: skip
        elapsed = time.monotonic() - started
        used = {pid: 100 * (cpu_seconds(pid) - cpu) / elapsed for pid, cpu in before.items()}
    # A core's worth: what was done over the CPU seconds it took the runner.
    connects = report["connected"] / max(report["connect_cpu_seconds"], 1e-9)
    posts = report["sent"] / max(report["publish_cpu_seconds"], 1e-9)
    found = {
        "connects_per_s": report["connects_per_s"],
        "connect_cpu_seconds": report["connect_cpu_seconds"],
        "connects_per_s_per_core": round(connects),
        "posts_per_s": report["sent_per_s"],
        "publish_cpu_seconds": report["publish_cpu_seconds"],
        "posts_per_s_per_core": round(posts),
        "mosquitto_cpu_percent": round(used[broker.pid], 1),
        "responder_cpu_percent": round(used[answering.pid], 1),
        "report": report,
    }
    print(
        f"runner ceiling     {found['connects_per_s_per_core']} connects/s and"
        f" {found['posts_per_s_per_core']} posts/s per core (mosquitto"
        f" {found['mosquitto_cpu_percent']}%, responder {found['responder_cpu_percent']}%)"
    )
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--duration", type=float, default=30)
    parser.add_argument("--ramp", type=float, default=1000)
    parser.add_argument("--ceiling-devices", type=int, default=0, help="default: --devices")
    parser.add_argument("--ceiling-rate", type=float, default=5000, help="posts/s on mosquitto")
    parser.add_argument("--no-ceiling", action="store_true", help="only the gatehouse run")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/load.json"))
    parser.add_argument("--respond", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.respond:
        asyncio.run(respond(args.respond))
        return 0
    results: dict[str, Any] = {"benchmark": "load", "settings": vars(args) | {"json": None}}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        server = Gatehouse(
            tmp / "data",
            extra_args=("--log-level", "warning", "--max-devices-per-product", "1000000"),
        ).start()
        try:
            results["report"] = against_gatehouse(args, server, tmp)
            if not args.no_ceiling:
                results["ceiling"] = ceiling(args, server, tmp)
        finally:
            server.stop()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
