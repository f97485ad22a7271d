"""The data subscription server: `enos-subscribe` clients over a WebSocket (port 9001).

A client authenticates (AuthReq: the subscription's access key and a SHA-256 sign over
it, the secret and the subId), joins a consumer group (SubReq), then pulls (PullReq) in
a loop and now and then commits the offsets it has processed (CommitDTO). A refusal is
the protocol's: an AuthRsp or SubRsp with a non-zero `ack` and the reason in `msg`,
then the connection is closed. A pull is answered at once when messages are waiting,
else after at most `pull_wait` seconds (empty), so an idle client does not spin.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from broker.streams import wire
from broker.streams.subscriptions import Consumer, Group, Subscriptions
from registry.streams import PARTITIONS, valid_group

log = logging.getLogger("gatehouse.subscribe")

ACK_OK = 0
ACK_UNAUTHORIZED = 401  # wrong access key or sign
ACK_NOT_FOUND = 404  # no such subscription
ACK_BAD_REQUEST = 400  # a frame out of order or a bad consumer group
ACK_BUSY = 429  # the subscription has as many consumers as it takes


@dataclass(frozen=True, slots=True)
class SubscribeConfig:
    host: str = "127.0.0.1"
    port: int = 9001
    pull_batch: int = 100  # messages per PullRsp (the client's queue holds 100)
    pull_wait: float = 0.25  # seconds a pull waits for messages before answering empty
    login_timeout: float = 10.0  # seconds from connecting to a successful SubReq
    idle_timeout: float = 120.0  # seconds without a frame before the connection is closed
    max_frame: int = 64 * 1024  # bytes; a client only ever sends small frames
    max_connections: int = 256
    max_consumers: int = 8  # per subscription, over all its groups


class Refused(Exception):
    def __init__(self, ack: int, msg: str) -> None:
        super().__init__(msg)
        self.ack = ack
        self.msg = msg


class SubscribeServer:
    def __init__(self, subscriptions: Subscriptions, config: SubscribeConfig) -> None:
        self.subscriptions = subscriptions
        self.config = config
        self._server: Server | None = None
        self.connections = 0
        self.refused = 0
        self._consumers: dict[str, int] = {}  # subId -> connected consumers

    async def start(self) -> None:
        self._server = await serve(
            self._connection,
            self.config.host,
            self.config.port,
            max_size=self.config.max_frame,
            compression=None,
            ping_interval=None,  # the client pings us every 10 s
        )

    @property
    def port(self) -> int:
        """The port it listens on (the one the system chose, for port 0)."""
        if self._server is None:
            return 0
        port: int = next(iter(self._server.sockets)).getsockname()[1]
        return port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None

    async def _connection(self, ws: ServerConnection) -> None:
        if self.connections >= self.config.max_connections:
            await ws.close(1013, "too many subscription connections")
            return
        self.connections += 1
        try:
            await self._session(ws)
        except Refused as exc:
            self.refused += 1
            log.info("subscription client %s refused: %s", _peer(ws), exc.msg)
        except (ConnectionClosed, TimeoutError):
            pass
        finally:
            self.connections -= 1

    async def _recv(self, ws: ServerConnection, within: float) -> tuple[int, Any]:
        data = await asyncio.wait_for(ws.recv(), within)
        if isinstance(data, str):
            raise Refused(ACK_BAD_REQUEST, "frames are binary TransferPkg")
        try:
            return wire.parse(data)
        except (DecodeError, KeyError):
            raise Refused(
                ACK_BAD_REQUEST, "a frame that is not a TransferPkg of sub.proto"
            ) from None

    async def _refuse(self, ws: ServerConnection, cmd: int, ack: int, msg: str) -> Refused:
        name = "AuthRsp" if cmd == wire.AUTH_RSP else "SubRsp"
        with contextlib.suppress(ConnectionClosed):
            await ws.send(wire.frame(cmd, wire.new(name, ack=ack, msg=msg)))
            await ws.close(1008, msg[:100])
        return Refused(ack, msg)

    async def _session(self, ws: ServerConnection) -> None:
        deadline = time.monotonic() + self.config.login_timeout
        cmd, auth = await self._recv(ws, self.config.login_timeout)
        if cmd != wire.AUTH_REQ:
            raise await self._refuse(ws, wire.AUTH_RSP, ACK_BAD_REQUEST, "send AuthReq first")
        sub_log = self.subscriptions.logs.get(auth.subId)
        if sub_log is None:
            raise await self._refuse(
                ws, wire.AUTH_RSP, ACK_NOT_FOUND, f"subscription {auth.subId[:64]!r} does not exist"
            )
        sub = sub_log.sub
        if auth.accessKey != sub.accessKey or not wire.sign_matches(
            auth.sign, sub.accessKey, sub.accessSecret, sub.subId
        ):
            raise await self._refuse(
                ws,
                wire.AUTH_RSP,
                ACK_UNAUTHORIZED,
                "wrong access key or sign for this subscription",
            )
        channel = f"{sub.subId}-{id(ws):x}"
        await ws.send(
            wire.frame(wire.AUTH_RSP, wire.new("AuthRsp", ack=ACK_OK, msg="OK", channelId=channel))
        )

        cmd, req = await self._recv(ws, max(deadline - time.monotonic(), 0.1))
        if cmd != wire.SUB_REQ or req.subId != sub.subId or req.accessKey != sub.accessKey:
            raise await self._refuse(
                ws,
                wire.SUB_RSP,
                ACK_BAD_REQUEST,
                "send SubReq for the subscription you authenticated",
            )
        if not valid_group(req.consumerGroup):
            raise await self._refuse(
                ws, wire.SUB_RSP, ACK_BAD_REQUEST, "consumerGroup: up to 64 letters, digits, '_.-'"
            )
        if self._consumers.get(sub.subId, 0) >= self.config.max_consumers:
            raise await self._refuse(
                ws, wire.SUB_RSP, ACK_BUSY, f"at most {self.config.max_consumers} consumers"
            )
        consumer = Consumer(req.clientId[:128])
        group = self.subscriptions.join(sub.subId, req.consumerGroup, consumer)
        self._consumers[sub.subId] = self._consumers.get(sub.subId, 0) + 1
        try:
            await ws.send(
                wire.frame(wire.SUB_RSP, wire.new("SubRsp", ack=ACK_OK, channelId=channel))
            )
            log.info(
                "subscription %s: consumer %s of group %s joined (partitions %s)",
                sub.subId,
                consumer.client_id,
                group.name,
                consumer.partitions,
            )
            await self._serve(ws, sub.subId, group, consumer)
        finally:
            self._consumers[sub.subId] -= 1
            self.subscriptions.leave(sub.subId, group, consumer)

    async def _serve(
        self, ws: ServerConnection, sub_id: str, group: Group, consumer: Consumer
    ) -> None:
        while sub_id in self.subscriptions.logs:
            cmd, message = await self._recv(ws, self.config.idle_timeout)
            if cmd == wire.PULL_REQ:
                rows = await self.subscriptions.pull(
                    sub_id, group, consumer, self.config.pull_batch, self.config.pull_wait
                )
                answer = wire.new("PullRsp", id=message.id, code=0, msgDTO=wire.new("MessageDTO"))
                for _, partition, offset, ts, key, value in rows:
                    answer.msgDTO.messages.add(
                        topic=sub_id,
                        partition=partition,
                        offset=offset,
                        timestamp=ts,
                        key=key,
                        value=value,
                    )
                await ws.send(wire.frame(wire.PULL_RSP, answer))
            elif cmd == wire.COMMIT:
                offsets: dict[int, int] = {}
                for commit in message.commits:
                    if commit.topic == sub_id and 0 <= commit.partition < PARTITIONS:
                        offsets[commit.partition] = max(
                            offsets.get(commit.partition, 0), commit.offset
                        )
                await self.subscriptions.commit(sub_id, group, consumer, offsets)
            elif cmd == wire.IDLE_REQ:
                rsp = wire.new("IdleRsp", svrTime=int(time.time() * 1000))
                await ws.send(wire.frame(wire.IDLE_RSP, rsp))
            else:
                raise Refused(ACK_BAD_REQUEST, f"unexpected frame {cmd} after SubReq")
        await ws.close(1000, "the subscription was deleted")


def _peer(ws: ServerConnection) -> str:
    address = ws.remote_address
    return f"{address[0]}:{address[1]}" if address else "?"
