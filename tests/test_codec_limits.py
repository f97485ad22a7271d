"""Python codecs under limits (issue 17): they run in worker processes, so a codec that
loops, allocates without bound or kills its process costs the call a 26002 and its
worker a replacement, never the broker; the workers end with serve. Against a real
`gatehouse serve` loading a real codec module (written to a temporary directory on the
server's PYTHONPATH) and real MQTT devices."""

from __future__ import annotations

import json
import os
import queue
import signal
import struct
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from broker.assemble import assemble_gate
from broker.gate.codecs import load_codecs
from broker.gate.face import GateConfig
from broker.gate.links import LateLinks
from registry import Registry, SqliteStore
from simulators.platform import with_mandatory
from tests.conftest import unique
from tests.devices import connect, eventually, new_device, topic
from tests.mqtt_client import Client
from tests.server import Api, Gatehouse

EXAMPLE = Path(__file__).parent.parent / "examples" / "th_frame"
MODEL = json.loads((EXAMPLE / "model.json").read_text())
REPORT, OTHER_REPLY = 0, 0xFF
LOOP, HOG, EXIT = 0x7D, 0x7C, 0x7B  # command bytes the faulty codec misbehaves on
TIME_LIMIT_S = 0.1  # broker.protocol.scripts.TIME_LIMIT_S, what the README promises
MEMORY_LIMIT_MIB = 256  # broker.gate.codec_workers.MEMORY_LIMIT

# The example's frame codec, except on three command bytes.
FAULTY_CODEC = textwrap.dedent(
    f"""
    import os

    from examples.th_frame.codec import ThFrameCodec


    class FaultyCodec(ThFrameCodec):
        def decode(self, raw):
            if raw[0] == {LOOP}:
                while True:
                    pass
            if raw[0] == {HOG}:
                hoard = []
                # bytes(n) is calloc: address space at once, pages only when touched, so
                # the limit is reached in well under the time limit; and 2 GiB at most,
                # so that a broker without a limit lives through it.
                while len(hoard) < 32:
                    hoard.append(bytes(64 * 1024 * 1024))
                raise RuntimeError("allocated 2 GiB and nothing stopped it")
            if raw[0] == {EXIT}:
                os._exit(3)
            return super().decode(raw)
    """
)


# FaultyCodec again, in a module that notes each worker's start in STARTS (a directory),
# and whose workers after the first WORKERS take RESPAWN_S to load (a codec importing
# something big, on a busy machine): how many were spawned, and time to see who waits.
COUNTED_CODEC = """
import os
import time

from faulty_codec import FaultyCodec as CountedCodec

_before = len(os.listdir({starts!r}))
open(os.path.join({starts!r}, str(os.getpid())), "x").close()
if _before >= {workers}:
    time.sleep({respawn_s})  # the behaviour under test: a replacement slow to load
"""


@pytest.fixture
def codec_server(
    new_gatehouse: Callable[..., Gatehouse], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Gatehouse]:
    """A gatehouse loading FaultyCodec as `faulty` (or the `target` given), with `args`
    besides."""
    modules = tmp_path / "codecs"
    modules.mkdir()
    (modules / "faulty_codec.py").write_text(FAULTY_CODEC)
    path = [str(modules), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in path if p))

    def start(*args: str, target: str = "faulty_codec:FaultyCodec") -> Gatehouse:
        return new_gatehouse(tmp_path / "data", "--codec", f"faulty={target}", *args)

    return start


def counted_server(
    codec_server: Callable[..., Gatehouse], tmp_path: Path, workers: int, respawn_s: float
) -> tuple[Gatehouse, Path]:
    """A gatehouse with `workers` workers of COUNTED_CODEC, and the directory of starts."""
    starts = tmp_path / "starts"
    starts.mkdir()
    text = COUNTED_CODEC.format(starts=str(starts), workers=workers, respawn_s=respawn_s)
    (tmp_path / "codecs" / "counted_codec.py").write_text(text)
    server = codec_server("--codec-workers", str(workers), target="counted_codec:CountedCodec")
    return server, starts


def faulty_product(api: Api) -> str:
    """A new Custom product (on the example's model) naming the codec."""
    model = unique("thframe")
    api("thing-models", "create", {"modelId": model, "tsl": MODEL}).ok()
    body = {
        "productName": unique("faulty"),
        "modelId": model,
        "dataFormat": "Custom",
        "codec": "faulty",
    }
    product_key: str = api("products", "create", with_mandatory(body)).data
    return product_key


def faulty_device(api: Api) -> dict[str, str]:
    """A device of a new Custom product naming the codec."""
    return new_device(api, faulty_product(api))


def post_raw(
    client: Client, device: dict[str, str], frame: bytes, timeout: float = 10.0
) -> tuple[int, int, int]:
    """(command byte, id, code) of the reply frame to `frame`; (-1, -1, code) for a reply
    the codec could not encode (JSON, in the device's dialect)."""
    up = topic(device, "thing/model/up_raw")
    client.publish(up, frame, qos=1)
    payload = client.next_received(up + "_reply", timeout=timeout).payload
    if payload.startswith(b"{"):
        return -1, -1, int(json.loads(payload)["code"])
    command, request_id, code = struct.unpack(">BiH", payload)
    return command, request_id, code


def report(request_id: int) -> bytes:
    return struct.pack(">BihB", REPORT, request_id, 215, 40)


def newest_message(api: Api, device: dict[str, str], code: int) -> dict[str, Any]:
    """The device's newest uplink in the message log, once it has `code` (written behind)."""
    query = {"productKey": device["productKey"], "deviceKey": device["deviceKey"]}

    def logged() -> dict[str, Any] | None:
        entries = api("devices", "listMessages", kind="up", **query).ok()
        return next((e for e in entries if e.get("code") == code), None)

    found: dict[str, Any] = eventually(logged)
    return found


def children_of(server: Gatehouse, marked: bytes = b"") -> set[int]:
    """The pids of the server's child processes whose command line has `marked`."""
    assert server.process is not None
    return children_of_pid(server.process.pid, marked)


def children_of_pid(pid: int, marked: bytes = b"") -> set[int]:
    """The pids of `pid`'s child processes whose command line has `marked`."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:  # it ended meanwhile
            continue
        parent = int(stat.rpartition(")")[2].split()[1])
        if parent == pid and marked in command:
            found.add(int(entry.name))
    return found


def workers_of(server: Gatehouse) -> set[int]:
    """The codec workers: multiprocessing's spawn children (not its resource tracker)."""
    return children_of(server, b"spawn_main")


def alive(pid: int) -> bool:
    """Running: not gone, and not a zombie waiting for a reaper."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_codec_that_loops_is_cut_off_and_its_worker_replaced(
    codec_server: Callable[..., Gatehouse],
) -> None:
    server = codec_server("--codec-workers", "1")  # one worker: the next call proves its heir
    api = server.client()
    looping, other = faulty_device(api), faulty_device(api)  # two products, one codec
    first = workers_of(server)
    assert len(first) == 1
    with connect(server.mqtt_port, looping) as device, connect(server.mqtt_port, other) as peer:
        started = time.monotonic()
        assert post_raw(device, looping, struct.pack(">Bi", LOOP, 1)) == (OTHER_REPLY, 0, 26002)
        assert time.monotonic() - started < TIME_LIMIT_S + 1.0  # cut off, not stuck
        # The same device and a device of another product are served by the new worker.
        assert post_raw(device, looping, report(2)) == (OTHER_REPLY, 2, 200)
        assert post_raw(peer, other, report(3)) == (OTHER_REPLY, 3, 200)
    assert "time limit of 100 ms" in newest_message(api, looping, 26002)["detail"]
    second = workers_of(server)
    assert len(second) == 1 and second != first
    assert not any(alive(pid) for pid in first)  # the stuck one was killed, not left


def test_a_codec_that_allocates_without_bound_hits_the_memory_limit(
    codec_server: Callable[..., Gatehouse],
) -> None:
    server = codec_server("--codec-workers", "1")
    api = server.client()
    greedy = faulty_device(api)
    with connect(server.mqtt_port, greedy) as device:
        assert post_raw(device, greedy, struct.pack(">Bi", HOG, 1)) == (OTHER_REPLY, 0, 26002)
        assert post_raw(device, greedy, report(2)) == (OTHER_REPLY, 2, 200)
    detail = newest_message(api, greedy, 26002)["detail"]
    assert f"memory limit of {MEMORY_LIMIT_MIB} MiB" in detail


def test_a_codec_that_kills_its_process_is_answered_and_replaced(
    codec_server: Callable[..., Gatehouse],
) -> None:
    server = codec_server("--codec-workers", "1")
    api = server.client()
    fatal = faulty_device(api)
    with connect(server.mqtt_port, fatal) as device:
        assert post_raw(device, fatal, struct.pack(">Bi", EXIT, 1)) == (OTHER_REPLY, 0, 26002)
        assert post_raw(device, fatal, report(2)) == (OTHER_REPLY, 2, 200)
    assert "worker process died (exit code 3)" in newest_message(api, fatal, 26002)["detail"]


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_codec_workers_end_with_serve(
    codec_server: Callable[..., Gatehouse], stop: signal.Signals
) -> None:
    server = codec_server()
    api = server.client()
    device = faulty_device(api)
    workers = workers_of(server)
    assert len(workers) == 2  # the default
    with connect(server.mqtt_port, device) as client:
        assert post_raw(client, device, report(1)) == (OTHER_REPLY, 1, 200)
    children = children_of(server)  # the workers, and multiprocessing's resource tracker
    assert workers <= children
    assert server.process is not None
    server.process.send_signal(stop)
    server.process.wait(timeout=10)
    eventually(lambda: not any(alive(pid) for pid in children), timeout=5)


def test_a_product_whose_codec_loops_leaves_the_other_products_a_worker(
    codec_server: Callable[..., Gatehouse], tmp_path: Path
) -> None:
    # Two workers, and a replacement takes 3 s to load: on main, while the looping
    # product's first worker was being replaced, its next call took the other one, and
    # the other product's calls waited seconds for a fresh interpreter.
    server, _ = counted_server(codec_server, tmp_path, workers=2, respawn_s=3.0)
    api = server.client()
    looping = faulty_product(api)
    loopers = [new_device(api, looping) for _ in range(4)]
    other = faulty_device(api)
    stop, cut_off = threading.Event(), threading.Event()
    codes: list[int] = []

    def loop(device: dict[str, str]) -> None:
        with connect(server.mqtt_port, device) as client:
            while not stop.is_set():
                codes.append(post_raw(client, device, struct.pack(">Bi", LOOP, 1))[2])
                cut_off.set()

    threads = [threading.Thread(target=loop, args=(d,)) for d in loopers]
    for thread in threads:
        thread.start()
    try:
        assert cut_off.wait(10)  # a loop was cut off: its worker is being replaced
        with connect(server.mqtt_port, other) as peer:
            for request_id in range(1, 11):
                # Bounded: served by the worker the loops may not take, not after a spawn.
                try:
                    reply = post_raw(peer, other, report(request_id), timeout=1.5)
                except queue.Empty:
                    pytest.fail(f"frame {request_id} of the other product waited over 1.5 s")
                assert reply == (OTHER_REPLY, request_id, 200)
    finally:
        stop.set()
        for thread in threads:
            thread.join(15)
    assert codes and set(codes) <= {26002, 429}


def test_a_product_whose_codec_keeps_costing_workers_is_refused_for_a_while(
    codec_server: Callable[..., Gatehouse], tmp_path: Path
) -> None:
    # On main every looping frame spawned an interpreter: 12 frames, 12 spawns.
    server, starts = counted_server(codec_server, tmp_path, workers=2, respawn_s=0)
    api = server.client()
    device = faulty_device(api)
    with connect(server.mqtt_port, device) as client:
        codes = [post_raw(client, device, struct.pack(">Bi", LOOP, 1))[2] for _ in range(12)]
    assert codes[:2] == [26002, 26002]  # one loop is no pattern, nor is its reply late
    assert 429 in codes

    def spawned() -> int:  # the replacements that have started (noted their start)
        return len(list(starts.iterdir())) - 2

    # Two in a row, then refused at once for a second or more. A replacement may not have
    # noted its start yet when the last reply came: the lower bound is polled, and the
    # upper one checked last, so that it counts a late start too.
    eventually(lambda: spawned() >= 2)
    detail = newest_message(api, device, 429)["detail"]
    assert "cost its worker" in detail and "refused for" in detail
    assert spawned() <= 4


async def test_codec_workers_end_when_the_gate_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In process, so that nothing at exit can do it instead: on main the workers lived
    # on after the gate stopped, until the process ended.
    modules = tmp_path / "codecs"
    modules.mkdir()
    (modules / "faulty_codec.py").write_text(FAULTY_CODEC)
    monkeypatch.syspath_prepend(str(modules))  # spawn hands sys.path to the workers
    before = children_of_pid(os.getpid(), b"spawn_main")
    codecs = load_codecs({"faulty": "faulty_codec:FaultyCodec"}, workers=2)
    store = SqliteStore(tmp_path / "registry.db")
    await store.open()
    try:
        workers = children_of_pid(os.getpid(), b"spawn_main") - before
        assert len(workers) == 2
        gate = assemble_gate(Registry(store), GateConfig(), codecs, LateLinks())
        await gate.start()
        await gate.stop()
        eventually(lambda: not any(alive(pid) for pid in workers), timeout=2)
    finally:
        assert codecs.workers is not None
        codecs.workers.close()  # on main, so that the test leaves none behind
        await store.close()
