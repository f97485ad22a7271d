"""What the benchmarks share: the brokers under test, bounded concurrency, RSS, tables."""

from __future__ import annotations

import asyncio
import gc
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

import orjson

from simulators.launch import Api

IN_FLIGHT = 64
R = TypeVar("R")


def spare_the_collector() -> None:
    """The load process holds up to 10,000 clients: spare it the collector's full passes
    over them (as `gatehouse serve` does), so it measures the brokers, not its pauses."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


# A device's (ProductKey, DeviceKey, secret), as the benchmarks provision them.
Credentials = tuple[str, str, str]
BENCH_TSL = {
    "properties": [
        {"identifier": "temp", "dataType": {"type": "float", "specs": {"min": "-40", "max": "120"}}}
    ]
}


def create_devices(api: Api, devices: Sequence[Credentials]) -> None:
    """Register devices with known secrets in one `batchCreate` (not timed)."""
    body = {
        "deviceList": [
            {
                "productKey": pk,
                "deviceKey": dk,
                "deviceSecret": s,
                "deviceName": dk,
                "timezone": "+00:00",
            }
            for pk, dk, s in devices
        ]
    }
    reply = api.http.post(
        "/connect-service/v2.0/devices",
        params={"action": "batchCreate", "orgId": api.org_id},
        content=orjson.dumps(body),
        headers={"content-type": "application/json"},
        timeout=120,
    )
    if reply.json().get("code") != 0:
        raise RuntimeError(f"provisioning failed: {reply.text[:300]}")


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def bounded(
    jobs: Sequence[Callable[[], Awaitable[None]]], deadline: float, in_flight: int = IN_FLIGHT
) -> int:
    """Run jobs `in_flight` at a time until done or the deadline; returns how many finished."""
    done = 0
    queue = iter(jobs)

    async def worker() -> None:
        nonlocal done
        for job in queue:
            if time.monotonic() > deadline:
                return
            await job()
            done += 1

    with suppress(TimeoutError):
        await asyncio.wait_for(
            asyncio.gather(*(worker() for _ in range(in_flight))),
            max(deadline - time.monotonic(), 0.1),
        )
    return done


def percentile(ordered: Sequence[float], fraction: float) -> float:
    return ordered[max(int(len(ordered) * fraction) - 1, 0)]


def print_table(rows: Sequence[Any], columns: Sequence[tuple[str, str]]) -> None:
    print(" | ".join(f"{title:>12}" for _, title in columns))
    for row in rows:
        values = asdict(row)
        cells = ["-" if values[key] is None else str(values[key]) for key, _ in columns]
        print(" | ".join(f"{cell:>12}" for cell in cells), *values.get("notes", []))


def report(
    name: str,
    rows: Sequence[Any],
    columns: Sequence[tuple[str, str]],
    ratios: dict[str, float | None],
    path: Path,
) -> None:
    """Print the whole table and the ratios, and write them as JSON to `path`."""
    print()
    print_table(rows, columns)
    for key, value in ratios.items():
        print(f"{key}: {value}")
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"benchmark": name, "rows": [asdict(r) for r in rows], "ratios": ratios}
    path.write_text(json.dumps(document, indent=2) + "\n")


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def ratio_of(a: R | None, b: R | None, figure: Callable[[R], float | None]) -> float | None:
    """`ratio` of one figure of two rows, either of which may be missing (a broker that
    did not run)."""
    return ratio(figure(a) if a is not None else None, figure(b) if b is not None else None)
