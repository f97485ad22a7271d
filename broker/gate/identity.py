"""Who a connection is, once admitted. Plain values: the ACL and router read them."""

from __future__ import annotations

from dataclasses import dataclass, field

from broker.protocol import downlink_filters, ext_prefix, sys_prefix
from broker.protocol.dialects import DEFAULT, Dialect


def device_session_key(product_key: str, device_key: str) -> str:
    """The broker's client id for a device: one connection per device, whatever client
    id (timestamp included) the device sent."""
    return f"device:{product_key}/{device_key}"


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    product_key: str
    device_key: str
    org_id: str
    cert_serial: str | None = None  # the client certificate it connected with, if any
    activating: bool = False  # connected with the ProductSecret, to get its DeviceSecret
    # How it signed in, and how it is answered (its `name` is for logs and the API).
    dialect: Dialect = DEFAULT
    sys_prefix: str = field(init=False)
    ext_prefix: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sys_prefix", sys_prefix(self.product_key, self.device_key))
        object.__setattr__(self, "ext_prefix", ext_prefix(self.product_key, self.device_key))

    @property
    def session_key(self) -> str:
        return device_session_key(self.product_key, self.device_key)

    @property
    def key(self) -> tuple[str, str]:
        return (self.product_key, self.device_key)

    @property
    def downlink_filters(self) -> tuple[str, str]:
        return downlink_filters(self.product_key, self.device_key)

    def __str__(self) -> str:
        return f"{self.product_key}/{self.device_key}"


@dataclass(frozen=True, slots=True)
class AppIdentity:
    """An application: an organisation's access key, read-only on its devices' topics."""

    org_id: str
    client_id: str

    @property
    def session_key(self) -> str:
        return f"app:{self.org_id}:{self.client_id}"

    def __str__(self) -> str:
        return f"application {self.org_id} ({self.client_id})"


@dataclass(frozen=True, slots=True)
class AnonymousIdentity:
    """A plain MQTT client, admitted only with `--allow-anonymous`, outside device topics."""

    client_id: str

    @property
    def session_key(self) -> str:
        return f"anon:{self.client_id}"

    def __str__(self) -> str:
        return f"anonymous client {self.client_id}"


Identity = DeviceIdentity | AppIdentity | AnonymousIdentity
