"""A device is online on the server by the time it reads its CONNACK: a command sent
the moment a device connects reaches it. It used to be answered 409 ("not online") for
the few loop turns between the CONNACK and the device being counted online."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from tests.devices import connect, new_device
from tests.server import Gatehouse, Reply

ROUNDS = 20  # each round is one race of the CONNACK against a command


def test_a_command_sent_right_after_the_connack_finds_the_device_online(
    gatehouse: Gatehouse, make_product: Callable[..., str]
) -> None:
    api = gatehouse.client()
    product = make_product()
    devices = [new_device(api, product) for _ in range(ROUNDS)]

    def invoke(device: dict[str, str]) -> Reply:
        # One client each: the calls run side by side, each waiting out its 1 s timeout.
        return gatehouse.client()(
            "commands",
            "invokeService",
            {"inputData": {"delay": 1}},
            productKey=device["productKey"],
            deviceKey=device["deviceKey"],
            serviceId="reboot",
            timeout=1,
        )

    with ThreadPoolExecutor(ROUNDS) as pool, contextlib.ExitStack() as clients:
        calls = []
        for device in devices:
            client = clients.enter_context(connect(gatehouse.mqtt_port, device))
            assert client.accepted
            # No wait for "online": the CONNACK is all a device knows of being in.
            calls.append(pool.submit(invoke, device))
        replies = [call.result() for call in calls]
    refused = [reply.body for reply in replies if reply.status == 409]
    assert refused == []
    # Each reached its device, which did not answer: the command timed out, not refused.
    assert {reply.status for reply in replies} == {200}, replies[0]
