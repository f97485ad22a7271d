"""Who hears about changes to the registry: the broker's credential cache, so that a
CONNECT never waits for the database and a change takes effect at once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from registry.activation import ActivationCode
from registry.models import Certificate, Device, Organization, Product


class RegistryObserver(Protocol):
    """Called after each change has been written. Must not block: no I/O, no awaits."""

    def devices_saved(self, devices: Sequence[Device]) -> None: ...

    def device_deleted(self, product_key: str, device_key: str) -> None: ...

    def product_saved(self, product: Product) -> None: ...

    def product_deleted(self, product_key: str) -> None: ...

    def org_saved(self, org: Organization) -> None: ...

    def topology_changed(
        self, product_key: str, device_key: str, gateway: tuple[str, str] | None
    ) -> None:
        """The sub-device's gateway is now `gateway` (ProductKey, DeviceKey), or none."""

    def certificate_issued(self, cert: Certificate) -> None: ...

    def certificate_revoked(self, serial: str) -> None: ...

    def activation_codes_added(self, codes: Sequence[ActivationCode]) -> None:
        """A product's codes were purchased."""
