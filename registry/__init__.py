"""Gatehouse's registry: organisations, products, devices, thing models, topology and
bindings, with their rules, persisted behind the store interfaces of `registry.store`
(SQLite or PostgreSQL)."""

from registry.errors import (
    Conflict,
    DeviceKeyExists,
    DeviceLimitExceeded,
    Forbidden,
    InvalidArgument,
    NotFound,
    RegistryError,
    StorageUnavailable,
    Unauthorized,
)
from registry.models import (
    Binding,
    Certificate,
    Command,
    Device,
    DeviceCreate,
    Organization,
    Product,
    ProductCreate,
    ProductStats,
    ThingModel,
    ThingModelCreate,
)
from registry.observers import RegistryObserver
from registry.registry import Attachment, Page, Registry
from registry.sqlite import SqliteStore
from registry.tsl import CompiledModel, Violation, compile_model

__all__ = [
    "Attachment",
    "Binding",
    "Certificate",
    "Command",
    "CompiledModel",
    "Conflict",
    "Device",
    "DeviceCreate",
    "DeviceKeyExists",
    "DeviceLimitExceeded",
    "Forbidden",
    "InvalidArgument",
    "NotFound",
    "Organization",
    "Page",
    "Product",
    "ProductCreate",
    "ProductStats",
    "Registry",
    "RegistryError",
    "RegistryObserver",
    "SqliteStore",
    "StorageUnavailable",
    "ThingModel",
    "ThingModelCreate",
    "Unauthorized",
    "Violation",
    "compile_model",
]
