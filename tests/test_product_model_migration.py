"""Migration 7 carries a registry of the old product model to the new one (issue 16), on
each store: access mode and specified gateway to the sub-device products, sub-devices
without a network, the NB-IoT platform from its free text, categories from the
catalogue, and a default project for every organisation."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from registry.migrations import MIGRATIONS
from registry.store.postgres_migrations import POSTGRES_MIGRATIONS
from registry.store.urls import store_for
from simulators.launch import Postgres

OLD = 6  # the schema before the product model's migration
OLD_DEFAULTS: dict[str, Any] = {
    "productDesc": "",
    "productTags": {},
    "category": None,
    "deviceType": "direct",
    "networkMethod": None,
    "dataFormat": "Json",
    "codec": None,
    "connectedPlatform": None,
    "encryption": None,
    "powerSaving": None,
    "specifiedGateway": {"enabled": False, "gatewayProductKeys": [], "gatewayDevices": []},
    "gatewayAccessMode": None,
    "dynamicGatewaySwitching": True,
    "bindingMode": "multi",
    "sharingEnabled": True,
    "biDirectionalAuth": False,
    "dynamicActivateEnabled": False,
    "defaultValidDay": 730,
    "maxValidDay": 1095,
    "modelId": "m",
    "activationQuota": None,
}
NAMED_GW = {"enabled": True, "gatewayProductKeys": ["gwone"], "gatewayDevices": []}
OLD_PRODUCTS: dict[str, dict[str, Any]] = {
    "gwone": {"deviceType": "gateway", "networkMethod": "4G", "gatewayAccessMode": "integration"},
    "gwtwo": {"deviceType": "gateway", "gatewayAccessMode": "proxy"},
    "suba": {"deviceType": "subdevice", "networkMethod": "NB-IoT", "powerSaving": {"mode": "PSM"}},
    "subb": {"deviceType": "subdevice", "specifiedGateway": NAMED_GW},
    "subc": {"deviceType": "subdevice"},
    "directsg": {"specifiedGateway": NAMED_GW},
    "nbaep": {"networkMethod": "NB-IoT", "connectedPlatform": "China Telecom AEP"},
    "nbdc": {"networkMethod": "NB-IoT", "connectedPlatform": "quectel"},
    "nbps": {"networkMethod": "NB-IoT", "powerSaving": {"mode": "eDRX", "edrxCycle": 81.92}},
    "wifi": {"networkMethod": "Wi-Fi", "connectedPlatform": "x", "category": "Smart lighting"},
}
TSL = orjson.dumps({"properties": []}).decode()


def _rows() -> dict[str, list[tuple[Any, ...]]]:
    products = [
        (key, "o1", key, "m", "secret0000", orjson.dumps({**OLD_DEFAULTS, **settings,
         "productName": {"defaultValue": key, "i18nValue": {}}}).decode(), 1)
        for key, settings in OLD_PRODUCTS.items()
    ]  # fmt: skip
    device = ("o1", "dev-secret", "", "{}", "{}", 1, 0, None, None, 1)
    return {
        "organizations": [("o1", "org", "ak1", "hash", 0, 1)],
        "thing_models": [("o1", "m", "m", "", TSL, 1)],
        "products": products,
        "devices": [("gwone", "g1", "asset-g1", '{"defaultValue": "g1"}', "+00:00", *device),
                    ("suba", "s1", "asset-s1", '{"defaultValue": "s1"}', "+00:00", *device)],
        "topology": [("suba", "s1", "gwone", "g1", 1)],
    }  # fmt: skip


COLUMNS = {
    "organizations": "org_id, name, access_key, secret_hash, admin, created_at",
    "thing_models": "org_id, model_id, name, description, tsl, created_at",
    "products": "product_key, org_id, name, model_id, product_secret, settings, created_at",
    "devices": "product_key, device_key, asset_id, name, timezone, org_id, device_secret,"
    " description, attributes, tags, enabled, online, activated_at, last_seen_at, created_at",
    "topology": "product_key, device_key, gateway_product_key, gateway_device_key, created_at",
}


def _old_sqlite(path: Path) -> str:
    db = sqlite3.connect(path)
    for script in MIGRATIONS[:OLD]:
        db.executescript(script)
    db.execute(f"PRAGMA user_version = {OLD}")
    for table, rows in _rows().items():
        marks = ", ".join("?" * len(rows[0]))
        db.executemany(f"INSERT INTO {table} ({COLUMNS[table]}) VALUES ({marks})", rows)
    db.commit()
    db.close()
    return f"sqlite://{path}"


async def _old_postgres(url: str) -> str:
    db = await asyncpg.connect(url)
    try:
        for script in POSTGRES_MIGRATIONS[:OLD]:
            await db.execute(script)
        await db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        await db.execute("INSERT INTO schema_version VALUES ($1)", OLD)
        for table, rows in _rows().items():
            marks = ", ".join(f"${n}" for n in range(1, len(rows[0]) + 1))
            await db.executemany(
                f"INSERT INTO {table} ({COLUMNS[table]}) VALUES ({marks})",
                rows,
            )
    finally:
        await db.close()
    return url


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_migration_7_carries_the_old_product_model(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if kind == "sqlite":
        url = _old_sqlite(tmp_path / "old.db")
    else:
        server: Postgres = request.getfixturevalue("postgres")
        url = await _old_postgres(server.new_database())
    store = store_for(url)
    await store.open()
    try:
        assert await store.schema_version() == len(MIGRATIONS)
        got = {}
        for key in OLD_PRODUCTS:
            found = await store.get_product(key)
            assert found is not None, key
            got[key] = found
        settings = {key: p.settings for key, p in got.items()}
        # The access mode: integration where a gateway of the old integration product
        # carries the sub-device, or its specified gateways are such; else proxy.
        assert settings["gwone"].gatewayAccessMode is None
        assert settings["gwtwo"].gatewayAccessMode is None
        assert settings["suba"].gatewayAccessMode == "integration"
        assert settings["subb"].gatewayAccessMode == "integration"
        assert settings["subb"].specifiedGateway.enabled is True
        assert settings["subc"].gatewayAccessMode == "proxy"
        # A direct product keeps its devices' direct connection: its specified gateway
        # is switched off, the list kept.
        assert settings["directsg"].deviceType == "direct"
        assert settings["directsg"].specifiedGateway.enabled is False
        assert settings["directsg"].specifiedGateway.gatewayProductKeys == ["gwone"]
        # Sub-devices have no network; the platform is NB-IoT's.
        assert settings["suba"].networkMethod is None and settings["suba"].powerSaving is None
        assert settings["nbaep"].connectedPlatform == "ChinaTelecomAEP"
        assert settings["nbaep"].encryption == "DTLS"
        assert settings["nbaep"].powerSaving is not None
        assert settings["nbaep"].powerSaving.mode == "PSM"
        assert settings["nbdc"].connectedPlatform == "DeveloperCenter"
        assert settings["nbps"].connectedPlatform == "ChinaTelecomAEP"
        assert settings["nbps"].powerSaving is not None
        assert settings["nbps"].powerSaving.edrxCycle == 81.92
        assert settings["wifi"].connectedPlatform is None
        # A free-text category is kept as a tag.
        assert settings["wifi"].category == "self-defined"
        assert settings["wifi"].productTags == {"category": "Smart lighting"}
        assert settings["gwone"].category == "self-defined"
        # Every organisation has its default project, and its products are in it.
        assert [p.projectId for p in await store.list_projects("o1")] == ["default"]
        assert {p.projectId for p in got.values()} == {"default"}
        assert {p.developmentStatus for p in got.values()} == {"development"}
    finally:
        await store.close()
