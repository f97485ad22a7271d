"""Rows to records: one mapper per model, driven by the model's fields.

A model's camelCase field is read from the snake_case column of the same words
(`lastSeenAt` from `last_seen_at`); a mapper names only the exceptions: a column
called otherwise, a value that needs converting (JSON text, SQLite's 0/1 for a bool,
a driver's buffer for bytes), a field no table stores. A row is whatever the driver
returns (sqlite3.Row, asyncpg's Record): both are read by column name.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any, Generic, Protocol, TypeVar

import orjson
from pydantic import BaseModel

from registry.activation import AccessKey, ActivationCode
from registry.models import (
    Binding,
    Certificate,
    Command,
    Device,
    Organization,
    Product,
    ProductImage,
    Project,
    ThingModel,
    Topology,
)
from registry.scripts import ProductScript
from registry.streams import Subscription, Webhook


class Row(Protocol):
    def __getitem__(self, key: Any, /) -> Any: ...
    def __iter__(self) -> Iterator[Any]: ...


Convert = Callable[[Any], Any]
M = TypeVar("M", bound=BaseModel)

_CAPITAL = re.compile(r"[A-Z]")


def column_of(field: str) -> str:
    """The column a field is stored in by the rule: `gatewayDeviceKey` -> `gateway_device_key`."""
    return _CAPITAL.sub(lambda capital: f"_{capital.group().lower()}", field)


def to_json(value: Any) -> str:
    return orjson.dumps(value).decode()


class RowMapper(Generic[M]):
    """Reads a `model` from a row: every field from its column by `column_of`, except
    those in `columns` (field -> column), `convert` (field -> what the column's value
    goes through) and `unstored` (fields no column holds; the model's default)."""

    def __init__(
        self,
        model: type[M],
        *,
        columns: Mapping[str, str] | None = None,
        convert: Mapping[str, Convert] | None = None,
        unstored: Collection[str] = (),
    ) -> None:
        columns = columns or {}
        convert = convert or {}
        unknown = (set(columns) | set(convert) | set(unstored)) - set(model.model_fields)
        if unknown:  # a misspelt exception would silently fall back to the rule
            raise ValueError(f"{model.__name__} has no fields {sorted(unknown)}")
        self.model = model
        # The stored fields and their columns, in the model's order.
        self.fields = tuple(f for f in model.model_fields if f not in unstored)
        self.columns = tuple(columns.get(f, column_of(f)) for f in self.fields)
        pairs = tuple(zip(self.fields, self.columns, strict=True))
        self._plain = tuple((f, c) for f, c in pairs if f not in convert)
        self._converted = tuple((f, c, convert[f]) for f, c in pairs if f in convert)

    def __call__(self, row: Row) -> M:
        values = {field: row[column] for field, column in self._plain}
        for field, column, conversion in self._converted:
            values[field] = conversion(row[column])
        return self.model.model_validate(values)


device = RowMapper(
    Device,
    columns={
        "deviceName": "name",
        "deviceDesc": "description",
        "deviceAttributes": "attributes",
        "deviceTags": "tags",
    },
    convert={
        "deviceName": orjson.loads,
        "deviceAttributes": orjson.loads,
        "deviceTags": orjson.loads,
        "enabled": bool,
        "online": bool,
    },
)
# `has_image` is not a column of products: PRODUCT_SELECT (sql.py) computes it.
product = RowMapper(
    Product,
    columns={"developmentStatus": "dev_status"},
    convert={"settings": orjson.loads, "hasImage": bool},
)
model = RowMapper(ThingModel, columns={"desc": "description"}, convert={"tsl": orjson.loads})
command = RowMapper(Command)
certificate = RowMapper(Certificate, columns={"certSN": "serial"})
# `permission` is the authenticating key's, not the organisation's (models.Organization).
org = RowMapper(Organization, convert={"admin": bool}, unstored={"permission"})
product_script = RowMapper(ProductScript, columns={"scriptContent": "content"})
topology = RowMapper(Topology)
project = RowMapper(Project)
product_image = RowMapper(ProductImage, convert={"content": bytes})
activation_code = RowMapper(ActivationCode)
access_key = RowMapper(AccessKey)
binding = RowMapper(Binding)
subscription = RowMapper(Subscription, convert={"productKeys": orjson.loads, "kinds": orjson.loads})
webhook = RowMapper(Webhook, convert={"productKeys": orjson.loads, "kinds": orjson.loads})

# The devices table's columns, and the commands', in their models' order (the inserts').
DEVICE_COLUMNS = ", ".join(device.columns)
COMMAND_FIELDS = command.fields
COMMAND_COLUMNS = command.columns
