"""/metrics in Prometheus's text format, for the admin organisation's key only."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.devices import connect, eventually, new_device, request
from tests.server import Api, Gatehouse


def _scrape(gatehouse: Gatehouse) -> dict[str, list[tuple[dict[str, str], float]]]:
    response = httpx.get(
        f"{gatehouse.url}/metrics", auth=(gatehouse.access_key, gatehouse.access_secret), timeout=10
    )
    assert response.status_code == 200
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def _value(
    samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str
) -> float:
    return sum(
        v for got, v in samples.get(name, []) if all(got.get(k) == w for k, w in labels.items())
    )


def test_metrics_count_routes_codes_and_refusals(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str]
) -> None:
    device = new_device(api, make_product())
    before = _scrape(gatehouse)
    route = "sys/thing/measurepoint/post"
    with connect(gatehouse.mqtt_port, device) as client:
        assert (
            request(client, device, "thing/measurepoint/post", {"measurepoints": {"temp": 1}})[
                "code"
            ]
            == 200
        )
        bad = {"measurepoints": {"temp": 1000}}
        assert request(client, device, "thing/measurepoint/post", bad)["code"] != 200
    with connect(gatehouse.mqtt_port, device, secret="wrong-secret-0123456789") as refused:
        assert not refused.accepted

    def counted() -> dict[str, list[tuple[dict[str, str], float]]] | None:
        after = _scrape(gatehouse)
        ok = _value(after, "gatehouse_messages_total", route=route, code="200")
        return (
            after
            if ok >= _value(before, "gatehouse_messages_total", route=route, code="200") + 1
            else None
        )

    after = eventually(counted)
    assert (
        _value(after, "gatehouse_messages_total", route=route)
        >= _value(before, "gatehouse_messages_total", route=route) + 2
    )
    assert _value(after, "gatehouse_connect_refusals_total") > _value(
        before, "gatehouse_connect_refusals_total"
    )
    assert _value(after, "gatehouse_uplink_stored_seconds_count") >= 2
    for name in (
        "gatehouse_writer_pending",
        "gatehouse_devices_connected",
        "gatehouse_commands_open",
    ):
        assert name in after


def test_metrics_want_the_admin_key(gatehouse: Gatehouse) -> None:
    assert httpx.get(f"{gatehouse.url}/metrics", timeout=10).status_code == 401
