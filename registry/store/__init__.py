"""Storage behind small typed interfaces (`registry.store.protocols`), on SQLite or
PostgreSQL; `registry.store.urls.store_for` picks one by URL."""

from registry.store.protocols import (
    CertificateStore,
    CommandStore,
    DeviceStore,
    Duplicate,
    LatestRow,
    LogRow,
    OrgStore,
    PresenceRow,
    ProductStore,
    Store,
    TelemetryStore,
)

__all__ = [
    "CertificateStore",
    "CommandStore",
    "DeviceStore",
    "Duplicate",
    "LatestRow",
    "LogRow",
    "OrgStore",
    "PresenceRow",
    "ProductStore",
    "Store",
    "TelemetryStore",
]
