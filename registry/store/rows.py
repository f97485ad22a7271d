"""Rows to records and back: the column lists and mappers both SQL stores share.

A row is whatever the driver returns (sqlite3.Row, asyncpg's Record): both are read by
column name.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import orjson

from registry.activation import AccessKey, ActivationCode
from registry.models import (
    Certificate,
    Command,
    Device,
    I18nString,
    Organization,
    Product,
    ProductImage,
    ProductSettings,
    Project,
    ThingModel,
    Topology,
)
from registry.scripts import ProductScript


class Row(Protocol):
    def __getitem__(self, key: Any, /) -> Any: ...
    def __iter__(self) -> Iterator[Any]: ...


DEVICE_COLUMNS = (
    "org_id, product_key, device_key, device_secret, asset_id, name, timezone, description,"
    " attributes, tags, enabled, online, activated_at, last_seen_at, created_at"
)


def to_json(value: Any) -> str:
    return orjson.dumps(value).decode()


def device(row: Row) -> Device:
    return Device(
        orgId=row["org_id"],
        productKey=row["product_key"],
        deviceKey=row["device_key"],
        deviceSecret=row["device_secret"],
        assetId=row["asset_id"],
        deviceName=I18nString.model_validate(orjson.loads(row["name"])),
        timezone=row["timezone"],
        deviceDesc=row["description"],
        deviceAttributes=orjson.loads(row["attributes"]),
        deviceTags=orjson.loads(row["tags"]),
        enabled=bool(row["enabled"]),
        online=bool(row["online"]),
        activatedAt=row["activated_at"],
        lastSeenAt=row["last_seen_at"],
        createdAt=row["created_at"],
    )


def product(row: Row) -> Product:
    return Product(
        orgId=row["org_id"],
        productKey=row["product_key"],
        productSecret=row["product_secret"],
        settings=ProductSettings.model_validate(orjson.loads(row["settings"])),
        createdAt=row["created_at"],
        projectId=row["project_id"],
        developmentStatus=row["dev_status"],
        releasedAt=row["released_at"],
        hasImage=bool(row["has_image"]),
    )


def model(row: Row) -> ThingModel:
    return ThingModel(
        orgId=row["org_id"],
        modelId=row["model_id"],
        name=row["name"],
        desc=row["description"],
        tsl=orjson.loads(row["tsl"]),
        createdAt=row["created_at"],
    )


# Command fields and their columns, in the table's order.
COMMAND_FIELDS = (
    "commandId",
    "orgId",
    "productKey",
    "deviceKey",
    "kind",
    "serviceId",
    "input",
    "requestId",
    "state",
    "createdAt",
    "timeoutMs",
    "expiresAt",
    "sentAt",
    "replyBy",
    "finishedAt",
    "replyCode",
    "output",
    "message",
    "mismatch",
)
COMMAND_COLUMNS = (
    "command_id",
    "org_id",
    "product_key",
    "device_key",
    "kind",
    "service_id",
    "input",
    "request_id",
    "state",
    "created_at",
    "timeout_ms",
    "expires_at",
    "sent_at",
    "reply_by",
    "finished_at",
    "reply_code",
    "output",
    "message",
    "mismatch",
)


def command(row: Row) -> Command:
    return Command.model_validate(
        {field: row[column] for field, column in zip(COMMAND_FIELDS, COMMAND_COLUMNS, strict=True)}
    )


def certificate(row: Row) -> Certificate:
    return Certificate(
        certSN=row["serial"],
        orgId=row["org_id"],
        productKey=row["product_key"],
        deviceKey=row["device_key"],
        certPem=row["cert_pem"],
        notBefore=row["not_before"],
        notAfter=row["not_after"],
        revokedAt=row["revoked_at"],
        createdAt=row["created_at"],
    )


def org(row: Row) -> Organization:
    return Organization(
        orgId=row["org_id"],
        name=row["name"],
        accessKey=row["access_key"],
        secretHash=row["secret_hash"],
        admin=bool(row["admin"]),
        createdAt=row["created_at"],
    )


def product_script(row: Row) -> ProductScript:
    return ProductScript(
        productKey=row["product_key"],
        orgId=row["org_id"],
        scriptType=row["script_type"],
        scriptContent=row["content"],
        version=row["version"],
        updatedAt=row["updated_at"],
    )


def topology(row: Row) -> Topology:
    return Topology(
        productKey=row["product_key"],
        deviceKey=row["device_key"],
        gatewayProductKey=row["gateway_product_key"],
        gatewayDeviceKey=row["gateway_device_key"],
        createdAt=row["created_at"],
    )


def project(row: Row) -> Project:
    return Project(
        orgId=row["org_id"],
        projectId=row["project_id"],
        name=row["name"],
        description=row["description"],
        createdAt=row["created_at"],
    )


def product_image(row: Row) -> ProductImage:
    return ProductImage(
        productKey=row["product_key"],
        contentType=row["content_type"],
        content=bytes(row["content"]),
        updatedAt=row["updated_at"],
    )


def activation_code(row: Row) -> ActivationCode:
    return ActivationCode(
        code=row["code"],
        productKey=row["product_key"],
        batchId=row["batch_id"],
        validSeconds=row["valid_seconds"],
        purchasedAt=row["purchased_at"],
        deviceKey=row["device_key"],
        consumedAt=row["consumed_at"],
        expiresAt=row["expires_at"],
    )


def access_key(row: Row) -> AccessKey:
    return AccessKey(
        accessKey=row["access_key"],
        orgId=row["org_id"],
        secretHash=row["secret_hash"],
        permission=row["permission"],
        description=row["description"],
        createdAt=row["created_at"],
    )
