"""`gatehouse serve`: the registry and its API in one event loop, on one data directory."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import uvicorn

from broker import provision
from broker.api import create_app
from broker.assemble import assemble_gate
from broker.bootstrap import first_organization
from broker.clock import SYSTEM_CLOCK
from broker.config import ServeConfig
from broker.core import CoreLimits
from broker.gate import GateConfig
from broker.gate.codecs import load_codecs
from broker.gate.links import LateLinks
from broker.gate.writer import WriterConfig
from broker.mqtt import MqttBroker, MqttConfig, TlsFiles
from broker.streams.runtime import Applications, ApplicationsConfig
from broker.streams.subscriptions import RetentionConfig
from certs import CertificateAuthority
from registry import Registry, SqliteStore, StorageUnavailable
from registry.store.streams_sql import SqlStreamStore
from registry.store.urls import store_for

log = logging.getLogger("gatehouse")

DATABASE_FILE = "registry.db"
CA_DIR = "ca"  # the CA, the TLS server certificate and their keys
DRAIN_TIMEOUT = 5.0  # seconds connections get to wind down at shutdown

__all__ = ["ServeConfig", "event_loop", "serve"]


def core_limits(config: ServeConfig) -> CoreLimits:
    """The broker core's bounds, from serve's configuration."""
    return CoreLimits(
        max_queued=config.max_queued_messages,
        max_inflight=config.max_inflight,
        connect_timeout=config.connect_timeout,
        max_packet=2 * config.max_payload + 65_536,
        disconnect_on_refused_publish=config.on_refused_publish == "disconnect",
        max_payload=config.max_payload,
        max_retained=config.max_retained_messages,
        max_retained_bytes=config.max_retained_bytes,
    )


def gate_config(config: ServeConfig) -> GateConfig:
    """The device gate's settings, from serve's configuration."""
    return GateConfig(
        allow_anonymous=config.allow_anonymous,
        connect_limit=config.connect_limit,
        sign_failure_limit=config.sign_failure_limit,
        sign_max_age=config.sign_max_age,
        max_payload=config.max_payload,
        writer=WriterConfig(log_keep=config.message_log_size),
        max_subdevices_per_gateway=config.max_subdevices_per_gateway,
    )


def applications_config(config: ServeConfig) -> ApplicationsConfig:
    """The application streams' settings, from serve's configuration."""
    return ApplicationsConfig(
        host=config.host,
        subscribe_port=config.subscribe_port,
        retention=RetentionConfig(
            max_messages=config.subscription_retention,
            max_age=config.subscription_max_age,
        ),
    )


def event_loop(choice: str = "auto") -> asyncio.Runner:
    """A runner on uvloop where installed (measured: 17% to 56% more MQTT throughput)."""
    if choice == "asyncio":
        return asyncio.Runner()
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise SystemExit("gatehouse: uvloop is not installed (--event-loop uvloop)") from None
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


def tune_gc() -> None:
    """Keep the collector's pauses short with tens of thousands of connections.

    Each connection holds thousands of long-lived objects; with the default
    thresholds a storm of CONNECTs triggers full collections over all of them again
    and again. What exists at start is frozen out of collection, and young
    collections run every 50,000 allocations instead of 700.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


async def serve(config: ServeConfig) -> None:
    with _data_dir_errors():
        config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    # SQLite in the data directory unless another database is named.
    store = (
        store_for(config.database)
        if config.database
        else SqliteStore(config.data_dir / DATABASE_FILE)
    )
    await store.open()
    try:
        ca_dir = config.data_dir / CA_DIR
        with _data_dir_errors():
            ca = CertificateAuthority.load_or_create(
                ca_dir, cert_file=config.ca_cert, key_file=config.ca_key
            )
            server_cert, server_key = ca.server_files(ca_dir, [config.host])
            ca_file = ca_dir / "ca-chain.pem"
            ca_file.write_text(ca.cert_pem)
        registry = Registry(store, max_devices_per_product=config.max_devices_per_product, ca=ca)
        with _data_dir_errors():
            await first_organization(registry, config.data_dir)
        if config.provision_file is not None:
            org = await registry.admin_org()
            if org is None:
                raise RuntimeError("the registry has no admin organisation to provision into")
            report = await provision.apply(registry, org, config.provision_file)
            log.info("%s (%s)", report.summary(), config.provision_file)
        tls = TlsFiles(server_cert, server_key, ca_file)
        links = LateLinks()  # the running broker's, bound to it below
        codecs = load_codecs(dict(config.codecs), config.codec_workers)  # their workers start
        gate = assemble_gate(registry, gate_config(config), codecs, links, SYSTEM_CLOCK)
        await gate.start()
        apps = Applications(SqlStreamStore(store), gate, applications_config(config))
        await apps.start()
        tune_gc()
        mqtt = MqttBroker(
            MqttConfig(
                config.host,
                config.mqtt_port,
                limits=core_limits(config),
                tls_port=config.mqtts_port,
                tls=tls,
            ),
            gate,
        )
        # The one cycle: the broker is built around the gate, and the gate's parts send
        # through the broker. Bound before it accepts anyone (broker/assemble.py).
        links.bind(mqtt.links)

        def stats() -> dict[str, Any]:
            core = mqtt.stats
            return {
                "mqtt": asdict(core) if core is not None else {},
                "devices": asdict(gate.stats),
                "writer": asdict(gate.writer.stats),
            }

        # The API's port is bound before anything is announced, so a port in use stops
        # serve with its number and a non-zero exit, and no ready line is printed.
        try:
            api_socket = _listen(config.host, config.http_port)
        except OSError as exc:
            await gate.stop()
            raise SystemExit(
                f"gatehouse: cannot run the API on {config.host}:{config.http_port}:"
                f" {exc.strerror or exc}"
            ) from None
        try:
            await apps.listen()
        except OSError as exc:
            api_socket.close()
            await gate.stop()
            await apps.stop()
            raise SystemExit(
                f"gatehouse: cannot run the subscription server on {config.host}:"
                f"{config.subscribe_port}: {exc.strerror or exc}"
            ) from None
        apps.metrics.sources.mqtt = mqtt
        try:
            await mqtt.start()
        except Exception as exc:
            api_socket.close()
            await gate.stop()
            await apps.stop()
            raise SystemExit(
                f"gatehouse: cannot run MQTT on {config.host}:{config.mqtt_port}"
                f"{f' (TLS on {config.mqtts_port})' if config.mqtts_port else ''}: {exc}"
            ) from None
        # Port 0 means "any free port": what was bound is announced and written down.
        ports = {"http": api_socket.getsockname()[1], **_named(mqtt.bound_ports())}
        if apps.port:
            ports["subscribe"] = apps.port
        _write_ports(config.data_dir, ports)
        server = _ApiServer(
            uvicorn.Config(
                create_app(
                    registry,
                    stats,
                    gate.gateways,
                    gate.commands,
                    gate.limiter,
                    max_body=config.max_api_body,
                    streams=apps.hub,
                    subscribe_port=ports.get("subscribe", 0),
                    metrics=apps.metrics,
                    sync=gate.writer.sync,
                    mqtt_ports=(ports["mqtt"], ports.get("mqtts", 0)),
                    downlink=gate.downlink,
                ),
                host=config.host,
                port=ports["http"],
                log_level="warning",
                access_log=False,
                lifespan="off",
            )
        )
        try:
            tls_port, subscribe_port = ports.get("mqtts"), ports.get("subscribe")
            print(
                f"gatehouse: MQTT on {config.host}:{ports['mqtt']}"
                f"{f', MQTT over TLS on {tls_port}' if tls_port else ''}"
                f"{' (anonymous clients allowed)' if config.allow_anonymous else ''},"
                f" API on http://{config.host}:{ports['http']} (OpenAPI at /openapi.json),"
                f"{f' subscriptions on {subscribe_port},' if subscribe_port else ''}"
                f" data in {config.data_dir.resolve()}",
                file=sys.stderr,
                flush=True,
            )
            with _stop_on_signals(server):
                await server.serve(sockets=[api_socket])
            if not server.started:
                raise SystemExit(f"gatehouse: could not listen on {config.host}:{config.http_port}")
            log.info("shutting down: closing connections and writing what is buffered")
        finally:
            api_socket.close()
            # The API has stopped accepting; now MQTT stops accepting, every session is
            # closed (wills sent, what it sent stored), and the write-behind is flushed.
            await mqtt.stop(DRAIN_TIMEOUT)
            await gate.stop()
            await apps.stop()  # after the gate: its last batch has reached the streams
    finally:
        await store.close()


PORTS_FILE = "ports.json"  # the ports serve bound, written before the ready line


def _named(bound: dict[str, int]) -> dict[str, int]:
    """MQTT listeners by what they are: `mqtt` and `mqtts`."""
    names = {"default": "mqtt", "tls": "mqtts"}
    return {names.get(name, name): port for name, port in bound.items()}


def _write_ports(data_dir: Path, ports: dict[str, int]) -> None:
    """`DATA_DIR/ports.json`, replaced whole, so a reader never sees half of it."""
    target = data_dir / PORTS_FILE
    partial = target.with_suffix(".json.partial")
    partial.write_text(json.dumps(ports) + "\n")
    partial.replace(target)


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket for the API (uvicorn serves on it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


@contextlib.contextmanager
def _data_dir_errors() -> Iterator[None]:
    """A data directory that cannot be used is one clear line, not a traceback."""
    try:
        yield
    except OSError as exc:
        where = exc.filename or "the data directory"
        raise StorageUnavailable(f"{where}: {exc.strerror or exc}") from None


class _ApiServer(uvicorn.Server):
    """uvicorn's server without its signal handling.

    uvicorn re-raises a captured SIGTERM once its own shutdown is done, which killed
    the process before `serve` could close the broker and flush what it holds.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.contextmanager
def _stop_on_signals(server: uvicorn.Server) -> Iterator[None]:
    """SIGTERM and SIGINT start a graceful shutdown; a second one ends it at once."""
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)

    def stop(signum: signal.Signals) -> None:
        if server.should_exit:
            log.warning("%s again: exiting without finishing the shutdown", signum.name)
            os._exit(1)
        log.info("%s received: shutting down", signum.name)
        server.should_exit = True

    for signum in signals:
        loop.add_signal_handler(signum, stop, signum)
    try:
        yield
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
