"""Commands to devices (docs/protocol.md, sections 5 and 10): service invocation, measurepoint
set and raw bytes down, each checked against the thing model before it is sent, and
followed from `pending` to an end: succeeded, failed, timed out, cancelled or expired.

Devices that sleep follow their product's power-saving mode: a PSM device does not
listen, so its commands wait for its next uplink or connect; an eDRX device gets them
at once while it is connected and otherwise they wait; DRX and devices without a mode
get them at once. Commands are written to the registry before they are sent, and a
sent command is never sent again, so a restart loses none and sends none twice.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import secrets
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from broker.clock import SYSTEM_CLOCK, Clock
from broker.gate.codecs import PayloadCodecs
from broker.gate.credentials import CredentialCache, DeviceId
from broker.gate.presence import Presence
from broker.gate.writer import WriteBehind
from broker.protocol import codes, sys_prefix
from broker.protocol.dialects import DEFAULT, SCRIPT_DIALECT, Dialect
from broker.protocol.scripts import ScriptError
from broker.protocol.topics import RAW_DOWN_REPLY, raw_down_topic
from registry import Command, Conflict, InvalidArgument, NotFound, Registry, ids
from registry.models import ProductSettings

log = logging.getLogger("gatehouse.commands")

DEFAULT_TIMEOUT_S = 30  # EnOS's default for a device's reply
MAX_TIMEOUT_S = 60  # EnOS's most, for devices that do not sleep
SLEEP_TIMEOUT_S = 300  # PSM and DRX: the published platforms' default
MAX_PENDING_TTL_S = 172_800  # EnOS: two days
MAX_WAITING = 50  # commands waiting per device (Azure's bound)
SWEEP_INTERVAL_S = 0.25


def power_mode(settings: ProductSettings) -> str | None:
    return settings.delivery_mode  # DRX with Qmode and NB-IoT on Developer Center: PSM


def default_timeout(settings: ProductSettings) -> float:
    """How long to wait for a device's reply, by its power-saving mode."""
    saving = settings.powerSaving
    if saving is None:
        return DEFAULT_TIMEOUT_S if power_mode(settings) is None else SLEEP_TIMEOUT_S
    if saving.mode == "eDRX" and saving.edrxCycle is not None:
        return 2 * saving.edrxCycle + 120
    return SLEEP_TIMEOUT_S


def max_timeout(settings: ProductSettings) -> float:
    return max(MAX_TIMEOUT_S, default_timeout(settings))


class CommandService:
    def __init__(
        self,
        registry: Registry,
        cache: CredentialCache,
        presence: Presence,
        *,
        payloads: PayloadCodecs | None = None,
        writer: WriteBehind | None = None,
        max_waiting: int = MAX_WAITING,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.registry = registry
        # Commands are written in the write-behind's group commits (awaited, so each
        # write is stored before the command goes on); without it, one at a time.
        self.writer = writer
        self.cache = cache
        self.presence = presence
        self.max_waiting = max_waiting
        self._open: dict[str, Command] = {}  # pending and sent commands, by id
        self._waiting: dict[DeviceId, collections.deque[str]] = {}  # pending, oldest first
        self._sent: dict[tuple[str, str, str], str] = {}  # (pk, dk, request id) -> command
        self._raw_sent: dict[DeviceId, collections.deque[str]] = {}  # raw replies carry no id
        self._done: dict[str, asyncio.Future[Command]] = {}
        self._flushing: dict[DeviceId, asyncio.Lock] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        # Custom products' scripts and codecs (the router's). Without them every
        # command goes as JSON, as to a Custom product with neither.
        self.payloads = payloads
        self.clock = clock
        # Told of each command that ended, once stored (the application streams).
        self.on_finished: Callable[[Command], None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Rebuild the queues from the registry: pending ones wait, sent ones await replies."""
        for command in await self.registry.command_log.open_commands():
            self._track(command)
        self._sweeper = asyncio.create_task(self._sweep(), name="gatehouse-commands")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for task in list(self._tasks):
            task.cancel()

    def _track(self, command: Command) -> None:
        key = (command.productKey, command.deviceKey)
        self._open[command.commandId] = command
        if command.state == "pending":
            self._waiting.setdefault(key, collections.deque()).append(command.commandId)
        elif command.kind == "raw":
            self._raw_sent.setdefault(key, collections.deque()).append(command.commandId)
        else:
            self._sent[(*key, command.requestId)] = command.commandId

    # -- submitting ----------------------------------------------------------------------------

    def device_of(self, org_id: str, product_key: str, device_key: str) -> DeviceId:
        """The organisation's device, from the credential cache (which follows every
        registry change) rather than a registry round trip; NotFound as the registry says."""
        entry = self.cache.devices.get((product_key, device_key))
        if entry is None or entry.org_id != org_id:
            raise NotFound(f"device {product_key}/{device_key} does not exist")
        return product_key, device_key

    async def submit(
        self,
        org_id: str,
        key: DeviceId,
        kind: str,
        body: Any,
        *,
        service_id: str = "",
        reply_timeout: float | None = None,
        pending_ttl: float = 0,
    ) -> Command:
        """Check and send (or queue) a command to the organisation's device `key`; with
        `pending_ttl` 0, wait for its end."""
        product = self.cache.products.get(key[0])
        if product is None:
            raise NotFound(f"product {key[0]!r} does not exist")
        settings = product.product.settings
        limit = max_timeout(settings)
        timeout = default_timeout(settings) if reply_timeout is None else reply_timeout
        if not 1 <= timeout <= limit:
            raise InvalidArgument(f"timeout must be 1 to {limit:g} seconds for this product")
        if not 0 <= pending_ttl <= MAX_PENDING_TTL_S:
            raise InvalidArgument(f"pendingTtl must be 0 to {MAX_PENDING_TTL_S} seconds")
        payload = await self._checked_input(org_id, settings, kind, body, service_id)
        waiting = len(self._waiting.get(key, ()))
        if waiting >= self.max_waiting:
            raise Conflict(
                f"{key[0]}/{key[1]} has {waiting} commands waiting, the"
                " most it may; cancel some or wait for it to come back"
            )
        reachable = self._reachable(key, settings)
        sleeping = power_mode(settings) in ("PSM", "eDRX")
        if not reachable and not sleeping and pending_ttl == 0:
            raise Conflict(
                f"{key[0]}/{key[1]} is not online; give pendingTtl to"
                " hold the command until it connects"
            )
        now = self.clock.wall_ms()
        hold = pending_ttl if pending_ttl > 0 else timeout
        command = Command(
            commandId=ids.random_token(16),
            orgId=org_id,
            productKey=key[0],
            deviceKey=key[1],
            kind=kind,
            serviceId=service_id,
            input=payload,
            # Alibaba's scripts pack the id into the frame as a number (parseInt).
            requestId=_numeric_id() if settings.dataFormat == "Custom" else ids.random_token(12),
            state="pending",
            createdAt=now,
            timeoutMs=int(timeout * 1000),
            expiresAt=now + int(hold * 1000),
        )
        done: asyncio.Future[Command] | None = None
        if pending_ttl == 0:
            done = asyncio.get_running_loop().create_future()
            self._done[command.commandId] = done
        try:
            if not (reachable and await self._send_now(command)):
                await self._store(command, new=True)
                self._track(command)
                # Asked again: a device that came online while it was being stored was
                # told of nothing waiting for it.
                if self._reachable(key, settings):
                    await self.flush(key)
        except BaseException:
            self._done.pop(command.commandId, None)
            raise
        if done is None:
            return self._open.get(command.commandId, command)
        try:
            return await asyncio.wait_for(asyncio.shield(done), hold + timeout + 5)
        except TimeoutError:  # the sweeper ends it well before this; a last guard
            return self._open.get(command.commandId, command)
        finally:
            self._done.pop(command.commandId, None)

    async def _checked_input(
        self, org_id: str, settings: ProductSettings, kind: str, body: Any, service_id: str
    ) -> bytes:
        if kind == "raw":
            if settings.dataFormat != "Custom":
                raise InvalidArgument("raw commands are for products whose dataFormat is Custom")
            if not isinstance(body, bytes) or not body:
                raise InvalidArgument("a raw command needs payload bytes")
            return body
        if not isinstance(body, Mapping):
            raise InvalidArgument("the command's data must be a JSON object")
        model = await self.registry.compiled_model(org_id, settings.modelId)
        if kind == "service":
            problems = model.check_service_input(service_id, body)
            where = "inputData"
        else:
            if not body:
                raise InvalidArgument("measurepoints must name at least one measurepoint")
            problems = model.check_writable(body)
            where = "measurepoints"
        if problems:
            shown = "; ".join(str(p) for p in problems[:5])
            raise InvalidArgument(f"{where} does not fit the thing model: {shown}")
        return orjson.dumps(body)

    def _reachable(self, key: DeviceId, settings: ProductSettings) -> bool:
        if power_mode(settings) == "PSM":
            return False  # it does not listen: its commands go out after its next uplink
        return self.presence.is_online(key)

    # -- sending ---------------------------------------------------------------------------------

    def device_seen(self, key: DeviceId) -> None:
        """The device connected or sent something: what waits for it goes out, in order."""
        if key in self._waiting:
            task = asyncio.create_task(self.flush(key))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def flush(self, key: DeviceId) -> None:
        lock = self._flushing.setdefault(key, asyncio.Lock())
        async with lock:
            queue = self._waiting.get(key)
            while queue:
                command = self._open.get(queue[0])
                queue.popleft()
                if command is None or command.state != "pending":
                    continue
                if command.expiresAt is not None and command.expiresAt <= self.clock.wall_ms():
                    await self._finish(command, "expired", message="expired before it was sent")
                    continue
                await self._send(command)
            # The lock stays: a flush waiting on it must not race one on a new lock.
            self._waiting.pop(key, None)

    async def _send_now(self, command: Command) -> bool:
        """Send a new command at once when nothing waits ahead of it for its device: it
        is written once, as sent, before it goes out (and once more at its end). False
        if others wait: it queues behind them."""
        key = (command.productKey, command.deviceKey)
        async with self._flushing.setdefault(key, asyncio.Lock()):
            if self._waiting.get(key):
                return False
            await self._send(command, stored=False)
            return True

    async def _send(self, command: Command, *, stored: bool = True) -> None:
        """Send a command; `stored` False for one not yet written (it is written here)."""
        try:
            topic, payload = await self._message(command)
        except ScriptError as exc:  # the product's script or codec cannot encode it
            if not stored:
                await self._store(command, new=True)
            await self._finish(
                command, "failed", reply_code=exc.code, message=f"not sent: {exc.message}"
            )
            return
        now = self.clock.wall_ms()
        sent = command.model_copy(
            update={"state": "sent", "sentAt": now, "replyBy": now + command.timeoutMs}
        )
        # Written before it goes out: after a crash it is awaited, never sent again.
        await self._store(sent, new=not stored)
        self._open[sent.commandId] = sent
        self._track(sent)
        self.presence.links.publish(topic, payload)

    async def _message(self, command: Command) -> tuple[str, bytes]:
        """The downlink, in the dialect the device spoke when it signed in; through the
        product's script or codec, on the raw downlink topic, if it has one."""
        key = (command.productKey, command.deviceKey)
        if command.kind == "raw":
            return raw_down_topic(*key), command.input
        product = self.cache.products.get(command.productKey)
        way = await self.payloads.way(product) if self.payloads and product else None
        # Alibaba's scripts get their envelope whatever the device signed in with.
        dialect = SCRIPT_DIALECT if way == "script" else self.presence.dialects.get(key, DEFAULT)
        rest, request = _request_of(command, dialect)
        if self.payloads is None or product is None or way is None:
            return f"{sys_prefix(*key)}{rest}", orjson.dumps(request)
        return raw_down_topic(*key), await self.payloads.encode(product, request)

    # -- replies ---------------------------------------------------------------------------------

    async def reply(self, key: DeviceId, rest: str, payload: bytes) -> bool:
        """A device's reply on `thing/service/..._reply` or `model/down_raw_reply`; True if
        it answered one of gatehouse's commands."""
        if rest == RAW_DOWN_REPLY:
            body = await self._decoded_reply(key, payload)
            if body is not None and await self._end_by_reply(key, body):
                return True
            queue = self._raw_sent.get(key)
            command = self._open.get(queue.popleft()) if queue else None
            if command is None:
                return False
            await self._finish(command, "succeeded", reply_code=codes.OK, output=payload)
            return True
        if not rest.startswith("thing/service/"):
            return False
        try:
            body = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return False
        return isinstance(body, dict) and await self._end_by_reply(key, body)

    async def _decoded_reply(self, key: DeviceId, payload: bytes) -> dict[str, Any] | None:
        """A raw reply through the product's script or codec; None without one or when
        it cannot be decoded (then it can only end a raw command, oldest first)."""
        product = self.cache.products.get(key[0])
        if self.payloads is None or product is None or await self.payloads.way(product) is None:
            return None
        try:
            return await self.payloads.decode(product, payload)
        except ScriptError as exc:
            log.info("%s/%s: a raw reply that does not decode: %s", *key, exc.message)
            return None

    async def _end_by_reply(self, key: DeviceId, body: Mapping[str, Any]) -> bool:
        """End the sent command whose request id the reply carries; False if none."""
        command_id = self._sent.get((*key, str(body.get("id"))))
        command = self._open.get(command_id) if command_id is not None else None
        if command is None:
            return False
        code = _code_of(body.get("code"))
        data = body.get("data")
        mismatch = await self._output_mismatch(command, data) if code == codes.OK else ""
        await self._finish(
            command,
            "succeeded" if code == codes.OK else "failed",
            reply_code=code,
            output=orjson.dumps(data),
            message=str(body.get("message") or ""),
            mismatch=mismatch,
        )
        return True

    async def _output_mismatch(self, command: Command, data: Any) -> str:
        if command.kind != "service":
            return ""
        product = self.cache.products.get(command.productKey)
        if product is None:
            return ""
        if not isinstance(data, Mapping):
            return "outputData is not a JSON object"
        model = await self.registry.compiled_model(command.orgId, product.product.settings.modelId)
        problems = model.check_service_output(command.serviceId, data)
        return "; ".join(str(p) for p in problems[:5])

    # -- ends ------------------------------------------------------------------------------------

    async def cancel(self, org_id: str, command_id: str) -> Command:
        command = await self.get(org_id, command_id)
        if command.state != "pending":
            raise Conflict(f"command {command_id} is {command.state}; only a pending one cancels")
        live = self._open.get(command_id, command)
        return await self._finish(live, "cancelled", message="cancelled")

    async def get(self, org_id: str, command_id: str) -> Command:
        stored = self.registry.command_log
        command = self._open.get(command_id) or await stored.get_command(command_id)
        if command is None or command.orgId != org_id:
            raise NotFound(f"command {command_id!r} does not exist")
        return command

    async def _finish(self, command: Command, state: str, **fields: Any) -> Command:
        update = {"state": state, "finishedAt": self.clock.wall_ms()}
        for name, value in fields.items():
            update[{"reply_code": "replyCode"}.get(name, name)] = value
        ended = command.model_copy(update=update)
        self._forget(command)
        await self._store(ended, new=False)
        if self.on_finished is not None:
            self.on_finished(ended)
        done = self._done.get(command.commandId)
        if done is not None and not done.done():
            done.set_result(ended)
        return ended

    async def _store(self, command: Command, *, new: bool) -> None:
        """Write a command (`new`: its first row) and return once it is stored: in the
        write-behind's next group commit while it runs, else on its own."""
        if self.writer is not None and self.writer.running:
            await asyncio.shield(self.writer.command(command, new=new))
        elif new:
            await self.registry.command_log.insert_command(command)
        else:
            await self.registry.command_log.update_command(command)

    def _forget(self, command: Command) -> None:
        key = (command.productKey, command.deviceKey)
        self._open.pop(command.commandId, None)
        self._sent.pop((*key, command.requestId), None)
        for queues in (self._raw_sent, self._waiting):
            queue = queues.get(key)
            if queue is not None and command.commandId in queue:
                queue.remove(command.commandId)

    def device_deleted(self, key: DeviceId) -> None:
        """The registry dropped its commands with it; so do the queues."""
        for command in [c for c in self._open.values() if (c.productKey, c.deviceKey) == key]:
            self._forget(command)
            done = self._done.get(command.commandId)
            if done is not None and not done.done():
                done.set_result(command.model_copy(update={"state": "cancelled"}))
        self._waiting.pop(key, None)
        self._raw_sent.pop(key, None)

    async def _sweep(self) -> None:
        """End pending commands past their TTL and sent ones past their timeout."""
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            now = self.clock.wall_ms()
            for command in list(self._open.values()):
                try:
                    if command.state == "pending" and (command.expiresAt or now + 1) <= now:
                        await self._finish(
                            command, "expired", message="the device did not come back in time"
                        )
                    elif command.state == "sent" and (command.replyBy or now + 1) <= now:
                        await self._finish(
                            command, "timed_out", message="the device did not reply in time"
                        )
                except Exception:
                    log.exception("ending command %s failed", command.commandId)


def _numeric_id() -> str:
    return str(secrets.randbelow(2**31 - 1) + 1)  # fits a signed 32-bit field


def _code_of(code: Any) -> int:
    """A reply's code; Alibaba's sample scripts decode it as a string ("200")."""
    if isinstance(code, str) and code.isdigit():
        return int(code)
    return code if isinstance(code, int) and not isinstance(code, bool) else codes.SERVER_ERROR


def _request_of(command: Command, dialect: Dialect) -> tuple[str, dict[str, Any]]:
    """A service call or property set: the topic under `/sys/{pk}/{dk}/` and the request."""
    params = orjson.loads(command.input)
    if command.kind == "service":
        rest, method, params = dialect.service_call(command.serviceId, params)
    else:
        rest, method, params = dialect.property_set(params)
    return rest, {"id": command.requestId, "version": "1.0", "method": method, "params": params}
