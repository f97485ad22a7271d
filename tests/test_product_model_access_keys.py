"""Access keys with permissions, as EnOS's "Device Management: Full Access" (issue 16):
an extra key is full access or read only; a read-only key lists and gets, and every
call that writes is a 403 with a message; nothing it asked to write is written."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import orjson
import pytest

from tests.devices import new_device
from tests.server import Api, Gatehouse


def extra_key(gatehouse: Gatehouse, api: Api, permission: str) -> Api:
    created = api("access-keys", "create", {"permission": permission}).ok()
    assert created["permission"] == permission and "secretHash" not in created
    return gatehouse.client(created["accessKey"], created["accessSecret"])


@pytest.mark.both_stores
def test_a_read_only_key_reads_and_is_refused_every_write(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str], model_id: str
) -> None:
    product_key = make_product()
    device = new_device(api, product_key)
    reader = extra_key(gatehouse, api, "read")
    assert reader("products", "get", productKey=product_key).ok()["productKey"] == product_key
    assert any(p["productKey"] == product_key for p in reader("products", "list").ok())
    assert reader("devices", "list", productKey=product_key).ok()
    assert reader("thing-models", "get", modelId=model_id).ok()
    writes = [
        ("products", "create", {"productName": "x", "modelId": model_id}, {}),
        ("products", "update", {"productDesc": "changed"}, {"productKey": product_key}),
        ("devices", "delete", None, device),
        ("devices", "disable", None, device),
        ("activation-codes", "purchase", {"count": 1, "validDays": 1}, {"productKey": product_key}),
        ("access-keys", "create", {"permission": "full"}, {}),
        ("devices", "exportCredentials", None, {"productKey": product_key}),
    ]
    for resource, action, body, query in writes:
        query = {k: v for k, v in query.items() if k in ("productKey", "deviceKey")}
        reply = reader(resource, action, body, **query)
        assert reply.status == 403, (resource, action, reply)
        assert reply.code == 99403 and "read only" in reply.msg
    # Nothing was written.
    found = api("devices", "get", productKey=product_key, deviceKey=device["deviceKey"]).ok()
    assert found["state"] == "inactive"
    assert api("products", "get", productKey=product_key).ok()["productDesc"] == ""
    assert api("activation-codes", "get", productKey=product_key).ok()["total"] == 0


def test_a_full_access_key_writes_and_a_deleted_key_is_refused(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str]
) -> None:
    product_key = make_product()
    created = api("access-keys", "create", {"permission": "full"}).ok()
    writer = gatehouse.client(created["accessKey"], created["accessSecret"])
    assert new_device(writer, product_key)["productKey"] == product_key
    listed = api("access-keys", "list").ok()
    assert created["accessKey"] in [k["accessKey"] for k in listed]
    assert all("secretHash" not in k and "accessSecret" not in k for k in listed)
    api("access-keys", "delete", accessKey=created["accessKey"]).ok()
    assert writer("products", "list").status == 401


def test_a_wrong_secret_or_permission_is_refused(gatehouse: Gatehouse, api: Api) -> None:
    created = api("access-keys", "create", {"permission": "read"}).ok()
    assert (
        gatehouse.client(created["accessKey"], "wrong").__call__("products", "list").status == 401
    )
    reply = api("access-keys", "create", {"permission": "admin"})
    assert reply.status == 400 and "permission" in reply.msg


def test_the_cli_creates_a_read_only_key(gatehouse: Gatehouse, api: Api) -> None:
    env = {
        **os.environ,
        "GATEHOUSE_URL": gatehouse.url,
        "GATEHOUSE_ACCESS_KEY": gatehouse.access_key,
        "GATEHOUSE_ACCESS_SECRET": gatehouse.access_secret,
    }
    done = subprocess.run(
        [sys.executable, "-m", "broker.cli", "org", "create-key", "--desc", "dashboards"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    created = orjson.loads(done.stdout)
    assert created["permission"] == "read" and created["description"] == "dashboards"
    reader = gatehouse.client(created["accessKey"], created["accessSecret"])
    assert reader("products", "list").status == 200
    assert reader("products", "delete", productKey="nope").status == 403
