"""Run the public `enos-subscribe` 2.6.0 client, unchanged, and print what it gets.

    python -m tests.subscription_consumer HOST PORT ACCESS_KEY SECRET SUB_ID GROUP

prints one JSON line per message the DataClient yields (`{"value": ...}`), after
`{"subscribed": true}`, or `{"refused": true}` when the server turned it away (the
client then closes its socket). The client commits what it has yielded before each
next message (auto_commit_interval_seconds=0), so a line printed and a following
message mean the earlier one is committed.

`auth` instead of GROUP sends one AuthReq with the package's own framing and sign and
prints the AuthRsp (`{"ack": ..., "msg": ...}`): how a refusal reads on the wire.

enos-subscribe's generated protobuf code predates protobuf 3.20; the pure-Python
implementation of today's protobuf still runs it, so this selects that before the
package is imported.
"""

from __future__ import annotations

import json
import os
import sys

os.environ["PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"] = "python"


def main() -> int:
    host, port, access_key, secret, sub_id, group = sys.argv[1:7]
    if group == "auth":
        return _auth_only(host, port, access_key, secret, sub_id)
    from enos_subscribe import DataClient

    client = DataClient(
        host=host,
        port=port,
        access_key=access_key,
        access_secret=secret,
        auto_commit_interval_seconds=0,
    )
    client.subscribe(sub_id=sub_id, consumer_group=group)
    if not client.ws_client.ws.connected:
        print(json.dumps({"refused": True}), flush=True)
        return 3
    print(json.dumps({"subscribed": True}), flush=True)
    for value in client:
        print(json.dumps({"value": value}), flush=True)
    return 0


def _auth_only(host: str, port: str, access_key: str, secret: str, sub_id: str) -> int:
    from enos_subscribe.core import build_pkg, pkg_parser, sign
    from enos_subscribe.proto import sub_pb2
    from websocket import create_connection

    ws = create_connection(f"ws://{host}:{port}", timeout=10)
    request = sub_pb2.AuthReq(
        accessKey=access_key, subId=sub_id, sign=sign(access_key, sub_id, secret), subType=0
    )
    ws.send_binary(build_pkg(2, request.SerializeToString()))
    kind, answer = pkg_parser(ws.recv())
    print(json.dumps({"type": kind.__name__, "ack": answer.ack, "msg": answer.msg}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
