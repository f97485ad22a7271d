"""`gatehouse serve --provision FILE`: thing models, products and devices declared in a
TOML or JSON file, applied at start.

Applying is idempotent: what exists (a model by modelId, a product by productKey or
name, a device by deviceKey) is kept as it is, and only what is missing is created, so
the same file can be given at every start.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from registry import InvalidArgument, Organization, Registry


@dataclass
class ProvisionReport:
    created: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return f"provisioned: {len(self.created)} created, {len(self.kept)} already present"


def load_file(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidArgument(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode()) if path.suffix == ".toml" else orjson.loads(raw)
    except (tomllib.TOMLDecodeError, orjson.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"{path} is not valid {path.suffix[1:] or 'JSON'}: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidArgument(f"{path} must hold a table/object with models, products")
    unknown = set(data) - {"models", "products"}
    if unknown:
        raise InvalidArgument(f"{path}: unknown sections {', '.join(sorted(unknown))}")
    return data


def _entries(data: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise InvalidArgument(f"{key} must be a list of tables/objects")
    return value


def _tsl(entry: dict[str, Any], base: Path) -> dict[str, Any]:
    entry = dict(entry)
    tsl_file = entry.pop("tslFile", None)
    if tsl_file is not None:
        entry["tsl"] = orjson.loads((base / tsl_file).read_bytes())
    return entry


async def apply(registry: Registry, org: Organization, path: Path) -> ProvisionReport:
    data = load_file(path)
    report = ProvisionReport()
    for entry in _entries(data, "models"):
        model_id = entry.get("modelId")
        if isinstance(model_id, str) and await registry.find_model(org.orgId, model_id):
            report.kept.append(f"model {model_id}")
            continue
        model = await registry.create_model(org.orgId, _tsl(entry, path.parent))
        report.created.append(f"model {model.modelId}")
    for entry in _entries(data, "products"):
        product_body = {k: v for k, v in entry.items() if k != "devices"}
        product_key = await _existing_product(registry, org, product_body)
        if product_key is None:
            product_key = (await registry.create_product(org.orgId, product_body)).productKey
            report.created.append(f"product {product_key}")
        else:
            report.kept.append(f"product {product_key}")
        await _devices(registry, org, product_key, _entries(entry, "devices"), report)
    return report


async def _existing_product(
    registry: Registry, org: Organization, body: Mapping[str, Any]
) -> str | None:
    key = body.get("productKey")
    if isinstance(key, str):
        product = await registry.find_product(key)
        if product is not None:
            if product.orgId != org.orgId:
                raise InvalidArgument(f"productKey {key} belongs to another organisation")
            return key
        return None
    name = body.get("productName")
    if isinstance(name, Mapping):
        name = name.get("defaultValue")
    return await registry.product_named(org.orgId, name) if isinstance(name, str) else None


async def _devices(
    registry: Registry,
    org: Organization,
    product_key: str,
    entries: list[dict[str, Any]],
    report: ProvisionReport,
) -> None:
    bodies = []
    for entry in entries:
        key = entry.get("deviceKey")
        if isinstance(key, str) and await registry.find_device(product_key, key):
            report.kept.append(f"device {product_key}/{key}")
            continue
        body = {"deviceName": key or "device", "timezone": "+00:00", **entry}
        bodies.append({**body, "productKey": product_key})
    if bodies:
        created = await registry.create_devices(org.orgId, bodies)
        report.created.extend(f"device {d.productKey}/{d.deviceKey}" for d in created)
