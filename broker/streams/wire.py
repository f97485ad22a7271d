"""The frames of EnOS's data subscription protocol, as `enos-subscribe` 2.6.0 speaks it.

Each WebSocket binary frame is a `TransferPkg` (common.proto) whose `data` holds one
message of sub.proto, named by `cmdId`. The client sends AuthReq (2), SubReq (6),
PullReq (4) in a loop, and CommitDTO (8) without waiting for an answer; the server
answers AuthRsp (3), SubRsp (7), PullRsp (5) and IdleRsp (1) to IdleReq (0). Both files
are proto2 with required fields, and the client parses strictly, so every required
field is always set here.

The schema is declared below from those facts (field names, numbers, types, labels);
the message classes are built from it at import time.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

IDLE_REQ, IDLE_RSP, AUTH_REQ, AUTH_RSP, PULL_REQ, PULL_RSP, SUB_REQ, SUB_RSP, COMMIT = range(9)

_F = descriptor_pb2.FieldDescriptorProto
REQUIRED, OPTIONAL, REPEATED = _F.LABEL_REQUIRED, _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
INT32, INT64, UINT32, BOOL = _F.TYPE_INT32, _F.TYPE_INT64, _F.TYPE_UINT32, _F.TYPE_BOOL
STRING, BYTES, MESSAGE = _F.TYPE_STRING, _F.TYPE_BYTES, _F.TYPE_MESSAGE

# message -> [(field, number, label, type, message type)]
_SCHEMA: dict[str, list[tuple[str, int, int, int, str]]] = {
    "TransferPkg": [
        ("cmdId", 1, REQUIRED, INT32, ""),
        ("data", 2, REQUIRED, BYTES, ""),
        ("seqId", 3, REQUIRED, INT32, ""),
        ("zip", 4, OPTIONAL, BOOL, ""),
        ("ver", 5, OPTIONAL, UINT32, ""),
    ],
    "IdleReq": [],
    "IdleRsp": [("svrTime", 1, REQUIRED, INT64, "")],
    "AuthReq": [
        ("accessKey", 1, REQUIRED, STRING, ""),
        ("subId", 2, REQUIRED, STRING, ""),
        ("sign", 3, REQUIRED, STRING, ""),
        ("subType", 4, REQUIRED, INT32, ""),
    ],
    "AuthRsp": [
        ("ack", 1, REQUIRED, INT32, ""),
        ("msg", 2, OPTIONAL, STRING, ""),
        ("channelId", 3, OPTIONAL, STRING, ""),
    ],
    "SubReq": [
        ("category", 1, REQUIRED, INT32, ""),
        ("clientId", 2, REQUIRED, STRING, ""),
        ("subId", 3, REQUIRED, STRING, ""),
        ("accessKey", 4, REQUIRED, STRING, ""),
        ("consumerGroup", 5, REQUIRED, STRING, ""),
    ],
    "SubRsp": [
        ("ack", 1, REQUIRED, INT32, ""),
        ("channelId", 2, OPTIONAL, STRING, ""),
        ("msg", 3, OPTIONAL, STRING, ""),
    ],
    "PullReq": [("id", 1, REQUIRED, INT64, "")],
    "Message": [
        ("topic", 1, REQUIRED, STRING, ""),
        ("partition", 2, REQUIRED, INT32, ""),
        ("offset", 3, REQUIRED, INT64, ""),
        ("timestamp", 4, REQUIRED, INT64, ""),
        ("key", 5, OPTIONAL, STRING, ""),
        ("value", 6, OPTIONAL, STRING, ""),
    ],
    "MessageDTO": [("messages", 1, REPEATED, MESSAGE, "Message")],
    "PullRsp": [
        ("id", 1, REQUIRED, INT64, ""),
        ("code", 2, REQUIRED, INT32, ""),
        ("msgDTO", 3, REQUIRED, MESSAGE, "MessageDTO"),
    ],
    "Commit": [
        ("topic", 1, REQUIRED, STRING, ""),
        ("partition", 2, REQUIRED, INT32, ""),
        ("offset", 3, REQUIRED, INT64, ""),
    ],
    "CommitDTO": [("commits", 1, REPEATED, MESSAGE, "Commit")],
}
PACKAGE = "gatehouse.enos_sub"  # our own name: the wire carries no type names


def _classes() -> dict[str, type[Message]]:
    file = descriptor_pb2.FileDescriptorProto(
        name="gatehouse_enos_sub.proto", package=PACKAGE, syntax="proto2"
    )
    for name, fields in _SCHEMA.items():
        message = file.message_type.add(name=name)
        for field_name, number, label, kind, type_name in fields:
            field = message.field.add(name=field_name, number=number, label=label, type=kind)
            if type_name:
                field.type_name = f".{PACKAGE}.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.{name}"))
        for name in _SCHEMA
    }


CLASSES = _classes()
TransferPkg = CLASSES["TransferPkg"]
REQUESTS = {
    IDLE_REQ: CLASSES["IdleReq"],
    AUTH_REQ: CLASSES["AuthReq"],
    PULL_REQ: CLASSES["PullReq"],
    SUB_REQ: CLASSES["SubReq"],
    COMMIT: CLASSES["CommitDTO"],
}


def new(name: str, **fields: Any) -> Any:
    return CLASSES[name](**fields)


def frame(cmd_id: int, message: Message) -> bytes:
    return bytes(
        TransferPkg(
            cmdId=cmd_id, data=message.SerializeToString(), seqId=0, zip=False, ver=0
        ).SerializeToString()
    )


def parse(data: bytes) -> tuple[int, Any]:
    """(cmdId, message); DecodeError or KeyError for a frame that is not the protocol."""
    pkg: Any = TransferPkg.FromString(data)
    return pkg.cmdId, REQUESTS[pkg.cmdId].FromString(pkg.data)


def expected_sign(access_key: str, access_secret: str, sub_id: str) -> str:
    digest = hashlib.sha256()
    for label, value in (
        (b"access_key", access_key),
        (b"access_secret", access_secret),
        (b"sub_id", sub_id),
    ):
        digest.update(label)
        digest.update(value.encode())
    return digest.hexdigest()


def sign_matches(sign: str, access_key: str, access_secret: str, sub_id: str) -> bool:
    return hmac.compare_digest(sign.lower(), expected_sign(access_key, access_secret, sub_id))
