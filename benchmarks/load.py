"""`gatehouse load` against a fresh `gatehouse serve`: the runner's CPU beside the
broker's, to show the runner is not the bottleneck it measures.

    .venv/bin/python benchmarks/load.py [--devices 10000] [--rate 1000] [--duration 30]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simulators.launch import Gatehouse


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--duration", type=float, default=30)
    parser.add_argument("--ramp", type=float, default=1000)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/load.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = Gatehouse(
            Path(tmp) / "data",
            extra_args=("--log-level", "warning", "--max-devices-per-product", "1000000"),
        ).start()
        assert server.process is not None
        try:
            report_file = Path(tmp) / "report.json"
            broker_before, started = cpu_seconds(server.process.pid), time.monotonic()
            result = subprocess.run(  # noqa: S603 - our own CLI, our arguments
                [
                    sys.executable,
                    "-m",
                    "broker.cli",
                    "load",
                    "--devices",
                    str(args.devices),
                    "--rate",
                    str(args.rate),
                    "--duration",
                    str(args.duration),
                    "--ramp",
                    str(args.ramp),
                    "--mqtt-port",
                    str(server.mqtt_port),
                    "--url",
                    server.url,
                    "--no-progress",
                    "--report",
                    str(report_file),
                ],
                env=server.env(),
                capture_output=True,
                text=True,
                check=False,
                timeout=args.duration + args.devices / args.ramp + 600,
            )
            elapsed = time.monotonic() - started
            broker_cpu = 100 * (cpu_seconds(server.process.pid) - broker_before) / elapsed
        finally:
            server.stop()
        print(result.stdout)
        if result.returncode != 0:
            print(result.stderr[-2000:], file=sys.stderr)
            return 1
        report = json.loads(report_file.read_text())
    report["broker_cpu_percent"] = round(broker_cpu, 1)
    print(f"broker CPU         {report['broker_cpu_percent']}% of one core (same period)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"benchmark": "load", "report": report}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
