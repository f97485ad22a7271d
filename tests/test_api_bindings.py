"""Bindings of end-user accounts under each binding mode and the sharing switch."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.server import Api

# What these tests check is stored: they run on each store (--store both).
pytestmark = pytest.mark.both_stores


def new_device(api: Api, make_product: Callable[..., str], **settings: object) -> dict[str, str]:
    key = make_product(**settings)
    created = api(
        "devices", "create", {"productKey": key, "deviceName": "d", "timezone": "+00:00"}
    ).data
    return {"productKey": key, "deviceKey": created["deviceKey"]}


def users(api: Api, device: dict[str, str]) -> list[tuple[str, str]]:
    return [(b["userId"], b["role"]) for b in api("bindings", "list", **device).data]


def test_multi_binding_and_its_lock(api: Api, make_product: Callable[..., str]) -> None:
    device = new_device(api, make_product)
    api("bindings", "bind", {"userId": "alice"}, **device).ok()
    api("bindings", "bind", {"userId": "bob@example.com"}, **device).ok()
    assert users(api, device) == [("alice", "owner"), ("bob@example.com", "owner")]

    reply = api("products", "update", {"bindingMode": "single"}, productKey=device["productKey"])
    assert (reply.status, reply.code) == (409, 99409)
    assert "two or more bound users" in reply.msg
    api("bindings", "unbind", {"userId": "bob@example.com"}, **device).ok()
    updated = api("products", "update", {"bindingMode": "single"}, productKey=device["productKey"])
    assert updated.data["bindingMode"] == "single"


def test_single_binding(api: Api, make_product: Callable[..., str]) -> None:
    device = new_device(api, make_product, bindingMode="single")
    api("bindings", "bind", {"userId": "alice"}, **device).ok()
    reply = api("bindings", "bind", {"userId": "bob"}, **device)
    assert (reply.status, reply.code) == (409, 99409)
    assert "single" in reply.msg
    assert users(api, device) == [("alice", "owner")]
    api("bindings", "unbind", {"userId": "alice"}, **device).ok()
    api("bindings", "bind", {"userId": "bob"}, **device).ok()
    assert users(api, device) == [("bob", "owner")]


def test_alternate_binding_replaces_the_owner_and_their_shares(
    api: Api, make_product: Callable[..., str]
) -> None:
    device = new_device(api, make_product, networkMethod="Bluetooth")
    api("bindings", "bind", {"userId": "alice"}, **device).ok()
    api("bindings", "share", {"ownerId": "alice", "userId": "carol"}, **device).ok()
    assert users(api, device) == [("alice", "owner"), ("carol", "shared")]
    api("bindings", "bind", {"userId": "bob"}, **device).ok()
    assert users(api, device) == [("bob", "owner")]


def test_sharing(api: Api, make_product: Callable[..., str]) -> None:
    device = new_device(api, make_product)
    api("bindings", "bind", {"userId": "alice"}, **device).ok()
    shared = api("bindings", "share", {"ownerId": "alice", "userId": "carol"}, **device).data
    assert shared["role"] == "shared" and shared["sharedBy"] == "alice"
    reply = api("bindings", "share", {"ownerId": "carol", "userId": "dave"}, **device)
    assert (reply.status, reply.code) == (403, 99403)
    reply = api("bindings", "share", {"ownerId": "alice", "userId": "carol"}, **device)
    assert reply.status == 409
    # A shared user is no owner: the multi lock does not count them.
    api("products", "update", {"bindingMode": "single"}, productKey=device["productKey"]).ok()
    api("bindings", "unbind", {"userId": "alice"}, **device).ok()
    assert users(api, device) == []

    closed = new_device(api, make_product, sharingEnabled=False)
    api("bindings", "bind", {"userId": "alice"}, **closed).ok()
    reply = api("bindings", "share", {"ownerId": "alice", "userId": "carol"}, **closed)
    assert (reply.status, reply.code) == (403, 99403)
    assert "sharing is off" in reply.msg


def test_bad_binding_requests(api: Api, make_product: Callable[..., str]) -> None:
    device = new_device(api, make_product)
    api("bindings", "bind", {"userId": "alice"}, **device).ok()
    assert api("bindings", "bind", {"userId": "alice"}, **device).status == 409
    reply = api("bindings", "unbind", {"userId": "zoe"}, **device)
    assert (reply.status, reply.code) == (404, 99404)
    reply = api("bindings", "bind", {"userId": "no spaces please"}, **device)
    assert reply.status == 400 and "userId" in reply.msg
    reply = api("bindings", "bind", {}, **device)
    assert reply.status == 400 and "userId is required" in reply.msg
    reply = api("bindings", "bind", {"userId": "x"}, productKey=device["productKey"])
    assert reply.status == 400
    assert users(api, device) == [("alice", "owner")]
