"""Batch device creation through the REST API: one `batchCreate` call of N devices.

The issue's target is 10,000 devices in one call in under 10 s. This is a registry
benchmark, so there is no bare-amqtt figure to set beside it; the MQTT benchmarks do that.

    .venv/bin/python benchmarks/registry_batch.py [--devices 10000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simulators.launch import Gatehouse
from simulators.platform import with_mandatory

TSL = {"properties": [{"identifier": "t", "dataType": {"type": "float", "specs": {}}}]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/registry_batch.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        server = Gatehouse(Path(tmp) / "data", extra_args=("--log-level", "warning")).start()
        try:
            api = server.client()
            api("thing-models", "create", {"modelId": "bench", "tsl": TSL}).ok()
            seconds = []
            for run in range(args.runs):
                key = api(
                    "products",
                    "create",
                    with_mandatory({"productName": f"p{run}", "modelId": "bench"}),
                ).ok()
                bodies = [
                    {"productKey": key, "deviceName": f"d{i}", "timezone": "+00:00"}
                    for i in range(args.devices)
                ]
                started = time.perf_counter()
                created = api("devices", "batchCreate", {"deviceList": bodies}).ok()
                seconds.append(time.perf_counter() - started)
                assert len(created) == args.devices
        finally:
            server.stop()

    median = statistics.median(seconds)
    result = {
        "benchmark": "registry_batch_create",
        "devices_per_call": args.devices,
        "runs_s": [round(s, 3) for s in seconds],
        "median_s": round(median, 3),
        "devices_per_s": round(args.devices / median),
        "target_s": 10.0,
        "met": median < 10.0,
    }
    print(f"{'devices/call':>14} {'median s':>9} {'devices/s':>10} {'runs (s)':>24}  target < 10 s")
    runs = " ".join(f"{s:.2f}" for s in seconds)
    print(
        f"{args.devices:>14} {median:>9.2f} {result['devices_per_s']:>10} {runs:>24}"
        f"  {'met' if result['met'] else 'MISSED'}"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0 if result["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
