"""Webhooks against a real HTTP receiver: signed JSON POSTs of what devices stored,
retried after a failure, with a delivery log readable through the API."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.devices import connect, eventually, new_device, request
from tests.server import Api, Gatehouse


class Receiver:
    """An HTTP server on a free port that records each POST and answers `status`."""

    def __init__(self) -> None:
        self.posts: queue.Queue[tuple[dict[str, str], bytes]] = queue.Queue()
        self.statuses: list[int] = []  # answers to give first, then 200
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                receiver.posts.put(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def next(self, timeout: float = 15.0) -> tuple[dict[str, str], dict[str, Any], bytes]:
        headers, body = self.posts.get(timeout=timeout)
        return headers, json.loads(body), body


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.server.shutdown()


def test_a_webhook_gets_signed_posts_retried_after_a_failure(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str], receiver: Receiver
) -> None:
    product_key = make_product()
    device = new_device(api, product_key)
    hook = api(
        "webhooks",
        "create",
        {"url": receiver.url, "productKeys": [product_key], "kinds": ["measurepoints"]},
    ).data
    assert (
        hook["secret"] and "secret" not in api("webhooks", "get", webhookId=hook["webhookId"]).data
    )
    receiver.statuses = [500]  # the first attempt fails: the same delivery comes again
    with connect(gatehouse.mqtt_port, device) as client:
        post = {"measurepoints": {"temp": 30.5}}
        assert request(client, device, "thing/measurepoint/post", post)["code"] == 200

    failed_headers, failed, _ = receiver.next()
    headers, delivery, raw = receiver.next()
    assert delivery == failed and headers["x-gatehouse-delivery"] == delivery["deliveryId"]
    (message,) = delivery["messages"]
    assert message["kind"] == "measurepoints" and message["deviceKey"] == device["deviceKey"]
    assert (message["pointId"], message["value"]) == ("temp", 30.5)
    # The signature is HMAC-SHA256 under the webhook's secret over "{timestamp}.{body}".
    timestamp = headers["x-gatehouse-timestamp"]
    expected = hmac.new(hook["secret"].encode(), f"{timestamp}.".encode() + raw, hashlib.sha256)
    assert headers["x-gatehouse-signature"] == "sha256=" + expected.hexdigest()
    assert failed_headers["x-gatehouse-signature"] != headers["x-gatehouse-signature"] or (
        failed_headers["x-gatehouse-timestamp"] == timestamp
    )

    log = eventually(
        lambda: (
            (got := api("webhooks", "deliveries", webhookId=hook["webhookId"]).data)
            and got[0]["ok"]
            and got
        )
    )
    assert [(a["attempt"], a["status"], a["ok"]) for a in log[:2]] == [
        (2, 200, True),
        (1, 500, False),
    ]
    state = api("webhooks", "get", webhookId=hook["webhookId"]).data
    assert state["failures"] == 1 and state["delivered"] == 1 and state["queued"] == 0


def test_a_webhook_url_must_be_http(api: Api) -> None:
    reply = api("webhooks", "create", {"url": "file:///etc/passwd"})
    assert reply.status == 400 and "url" in reply.msg
