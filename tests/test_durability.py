"""What a device was told was stored is stored: after kill -9, after SIGTERM, and not
claimed at all while the disk is full (README, "What is guaranteed"). The restarts run
on each store (with --store both); the disk and data-directory tests are SQLite's, and
PostgreSQL's outage is tests/test_postgresql.py's."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from broker.protocol import encode_request
from simulators.platform import with_mandatory
from tests.conftest import THERMOSTAT_TSL, unique
from tests.devices import connect, eventually, new_device, topic
from tests.mqtt_client import Client
from tests.server import Api, Gatehouse

POST = "thing/measurepoint/post"


@dataclass
class Poster:
    """One device posting measurepoints at QoS 1, one at a time, until its connection
    ends; `acked` holds each post that got both its PUBACK and a 200 reply."""

    client: Client
    device: dict[str, str]
    acked: list[tuple[str, int]] = field(default_factory=list)  # (request id, time)
    refused: list[dict[str, Any]] = field(default_factory=list)  # replies other than 200
    infos: list[Any] = field(default_factory=list)  # paho's record of each PUBLISH

    def run(self, stop: threading.Event, count: int = 10**9) -> None:
        base = int(time.time() * 1000)
        for seq in range(count):
            if stop.is_set() or self.client.disconnected.is_set():
                return
            request_id = f"{self.device['deviceKey']}-{seq}"
            stamp = base + seq
            params = {"measurepoints": {"temp": float(seq % 100)}, "time": stamp}
            info = self.client.paho.publish(
                topic(self.device, POST), encode_request(request_id, "", params), qos=1
            )
            self.infos.append(info)
            reply = self._reply(request_id)
            if reply is None:
                return
            if reply.get("code") != 200:
                self.refused.append(reply)
                continue
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(
                    5.0
                )  # the PUBACK follows the reply, or the connection is gone
            if info.is_published():
                self.acked.append((request_id, stamp))

    def _reply(self, request_id: str) -> dict[str, Any] | None:
        wanted = topic(self.device, POST + "_reply")
        while not self.client.disconnected.is_set():
            try:
                message = self.client.received.get(timeout=0.2)
            except queue.Empty:
                continue
            if message.topic == wanted:
                reply: dict[str, Any] = orjson.loads(message.payload)
                if reply.get("id") == request_id:
                    return reply
        return None


def _product(api: Api) -> str:
    model = unique("model")
    api("thing-models", "create", {"modelId": model, "tsl": THERMOSTAT_TSL}).ok()
    key: str = api(
        "products", "create", with_mandatory({"productName": unique("p"), "modelId": model})
    ).data
    return key


@contextlib.contextmanager
def posting(server: Gatehouse, devices: list[dict[str, str]]) -> Iterator[list[Poster]]:
    posters = [Poster(connect(server.mqtt_port, device), device) for device in devices]
    stop = threading.Event()
    threads = [threading.Thread(target=p.run, args=(stop,), daemon=True) for p in posters]
    for thread in threads:
        thread.start()
    try:
        yield posters
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
        for poster in posters:
            with contextlib.suppress(Exception):
                poster.client.close()


def restart(new_gatehouse: Callable[..., Gatehouse], first: Gatehouse, data_dir: Path) -> Api:
    """The same data directory and credentials again; the API of the new process."""
    again = new_gatehouse(
        data_dir,
        org_id=first.org_id,
        access_key=first.access_key,
        access_secret=first.access_secret,
    )
    return again.client()


def _wait_for(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the devices did not get enough posts answered"
        time.sleep(0.02)  # a bounded poll of counters other threads fill; no event to wait on


def _missing(api: Api, posters: list[Poster]) -> list[str]:
    """Acked posts that the registry does not have, and devices whose latest is behind."""
    missing: list[str] = []
    for poster in posters:
        query = {"productKey": poster.device["productKey"], "deviceKey": poster.device["deviceKey"]}
        log = api("devices", "listMessages", kind="up", limit=1000, **query).data
        stored = {orjson.loads(entry["payload"])["id"] for entry in log if entry.get("payload")}
        missing += [request_id for request_id, _ in poster.acked if request_id not in stored]
        if poster.acked:
            latest = api("devices", "getLatest", **query).data
            newest = max(stamp for _, stamp in poster.acked)
            if latest.get("temp", {}).get("time", 0) < newest:
                missing.append(f"latest of {poster.device['deviceKey']}")
    return missing


@pytest.mark.both_stores
def test_every_acked_post_survives_kill_9(
    new_gatehouse: Callable[..., Gatehouse], tmp_path: Path
) -> None:
    server = new_gatehouse(tmp_path / "data")
    api = server.client()
    product = _product(api)
    devices = [new_device(api, product) for _ in range(10)]
    with posting(server, devices) as posters:
        _wait_for(lambda: sum(len(p.acked) for p in posters) >= 800)
        assert server.process is not None
        server.process.kill()  # SIGKILL mid-stream: no shutdown code runs
        server.process.wait()
    acked = sum(len(p.acked) for p in posters)
    assert not [r for p in posters for r in p.refused]
    assert _missing(restart(new_gatehouse, server, tmp_path / "data"), posters) == [], (
        f"of {acked} acked posts"
    )


@pytest.mark.both_stores
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_drain_and_exit_0(
    new_gatehouse: Callable[..., Gatehouse], tmp_path: Path, signum: signal.Signals
) -> None:
    server = new_gatehouse(tmp_path / "data")
    api = server.client()
    product = _product(api)
    devices = [new_device(api, product) for _ in range(10)]
    watcher = Client(server.mqtt_port, unique("watcher"))
    assert not watcher.accepted  # nothing anonymous: the wills below reach nobody else
    with posting(server, devices) as posters:
        _wait_for(lambda: sum(len(p.acked) for p in posters) >= 500)
        assert server.process is not None
        started = time.monotonic()
        server.process.send_signal(signum)
        code = server.process.wait(timeout=15)
        took = time.monotonic() - started
        for poster in posters:  # the server closed every session
            assert poster.client.disconnected.wait(5)
    assert code == 0, server.log()
    assert took < 10, f"shutdown took {took:.1f} s"
    assert "Traceback" not in server.log()
    api = restart(new_gatehouse, server, tmp_path / "data")
    assert _missing(api, posters) == []
    query = {"productKey": devices[0]["productKey"], "deviceKey": devices[0]["deviceKey"]}
    assert api("devices", "get", **query).data["online"] is False


def _mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)


def _fill(directory: Path) -> Path:
    """Fill the file system holding `directory`; returns the file that holds the space."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for chunk in (1 << 20, 4096, 1):  # down to the last byte, so that no page is left
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * chunk):
                    pass
    finally:
        os.close(fd)
    return filler


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    try:
        _mount_tmpfs(mount, "40m")
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        pytest.fail(f"this test needs to mount a tmpfs (run as root): {exc}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_an_error_reply_not_a_lost_200(
    new_gatehouse: Callable[..., Gatehouse], small_disk: Path
) -> None:
    server = new_gatehouse(small_disk / "data")
    api = server.client()
    product = _product(api)
    device = new_device(api, product)
    client = connect(server.mqtt_port, device)
    poster = Poster(client, device)
    poster.run(threading.Event(), count=5)
    assert len(poster.acked) == 5

    filler = _fill(small_disk)
    stop = threading.Event()
    full = Poster(client, device)
    # Fewer than paho's 20 in flight: the refused posts are never PUBACKed.
    thread = threading.Thread(target=full.run, args=(stop, 15), daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive()
    # While the disk is full nothing is claimed: every post is either refused with an
    # error reply (and not PUBACKed) or, if it made it into a page the disk still had,
    # stored; none is acked and then lost.
    assert full.refused, "a full disk must show in the replies"
    assert {r["code"] for r in full.refused} == {500}
    assert len(full.refused) + len(full.acked) == 15
    assert sum(info.is_published() for info in full.infos) == len(full.acked)
    assert "cannot write" in full.refused[0]["message"]
    stats = api("broker", "stats").data["writer"]
    assert stats["failing"] is True
    assert "full" in stats["last_error"]
    refused = api(
        "devices",
        "create",
        {"productKey": product, "deviceName": unique("d"), "timezone": "+08:00"},
    )
    assert refused.status == 503, refused
    assert "full" in refused.msg
    assert "cannot write" in server.log()

    filler.unlink()  # space returns: writing resumes by itself
    again = Poster(client, device)

    def one_more_stored() -> bool:
        again.run(threading.Event(), count=1)
        return bool(again.acked)

    eventually(one_more_stored)
    assert api("broker", "stats").data["writer"]["failing"] is False
    client.close()
    assert _missing(api, [poster, full, again]) == []


def serve_once(
    data_dir: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`gatehouse serve` that is expected to stop by itself (a refusal at start)."""
    server = Gatehouse(data_dir)
    command = [
        sys.executable,
        "-m",
        "broker.cli",
        "serve",
        "--data-dir",
        str(data_dir),
        "--http-port",
        str(server.http_port),
        "--mqtt-port",
        str(server.mqtt_port),
        "--mqtts-port",
        "0",
        *args,
    ]
    return subprocess.run(
        command, env={**server.env(), **(env or {})}, capture_output=True, text=True, timeout=60
    )


def test_a_garbage_database_is_one_line_and_exit_2(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "registry.db").write_bytes(b"this is not SQLite\n" * 1000)
    done = serve_once(data_dir)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "registry.db" in lines[0] and "not a database" in lines[0]


def test_a_read_only_data_directory_is_one_line_and_exit_2(tmp_path: Path) -> None:
    mount = tmp_path / "ro"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mount)], check=True)
    try:
        # The directory itself (SQLite cannot create its file), and one to create.
        for data_dir, why in ((mount, "unable to open"), (mount / "data", "Read-only")):
            done = serve_once(data_dir)
            assert done.returncode == 2, done.stderr
            lines = done.stderr.strip().splitlines()
            assert len(lines) == 1, done.stderr
            assert str(data_dir) in lines[0] and why in lines[0], lines[0]
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
