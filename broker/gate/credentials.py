"""Every device's and application's credentials in memory, kept current by the registry.

A CONNECT is decided from this cache alone, with no database round trip. It is loaded
once at start and then follows each change the registry makes (it is a
`RegistryObserver`); all writes go through the one Registry in this process.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from broker.gate.activation_codes import ActivationCodes, CodeLedger
from registry import Certificate, Device, Organization, Product
from registry.activation import ActivationCode
from registry.models import Topology

DeviceId = tuple[str, str]  # (ProductKey, DeviceKey)


class CredentialSource(CodeLedger, Protocol):
    """What the cache is loaded from at start (the registry), and where the activation
    codes' decisions are written."""

    async def all_orgs(self) -> list[Organization]: ...
    async def all_products(self) -> list[Product]: ...
    async def all_devices(self) -> list[Device]: ...
    async def revoked_serials(self) -> list[str]: ...
    async def live_certificates(self) -> list[tuple[str, str, str]]: ...
    async def all_topology(self) -> list[Topology]: ...
    async def all_activation_codes(self) -> list[ActivationCode]: ...


@dataclass(slots=True)
class DeviceCredential:
    """What admission needs of a device; small, since there may be 100,000 of them."""

    org_id: str
    secret: str
    enabled: bool
    activated: bool
    asset_id: str


@dataclass(slots=True)
class ProductCredential:
    product: Product
    activated: int  # devices activated so far, for the activation quota

    @property
    def quota_left(self) -> int | None:
        quota = self.product.settings.activationQuota
        return None if quota is None else max(quota - self.activated, 0)


@dataclass(slots=True)
class AppCredential:
    org_id: str
    secret_hash: str


class CredentialCache:
    def __init__(self) -> None:
        self.products: dict[str, ProductCredential] = {}
        self.devices: dict[DeviceId, DeviceCredential] = {}
        self.apps: dict[str, AppCredential] = {}
        # The topology: each sub-device's gateway, and each gateway's sub-devices.
        self.gateway_of: dict[DeviceId, DeviceId] = {}
        self.children: dict[DeviceId, set[DeviceId]] = {}
        self.revoked: set[str] = set()  # serials of revoked device certificates
        # Each device's certificates: admission takes no other (and none revoked), so that
        # a device made again with a deleted one's key does not inherit its certificates.
        self.certificates: dict[DeviceId, set[str]] = {}
        # Called when a certificate is revoked, to end connections that use it.
        self.on_certificate_revoked: Callable[[str], None] | None = None
        # Called when a device may no longer stay connected: (pk, dk, deleted).
        self.on_revoked: Callable[[str, str, bool], None] | None = None
        # Products' activation codes and the code each device holds.
        self.codes = ActivationCodes()
        self.codes.on_exhausted = self._codes_ran_out

    async def load(self, store: CredentialSource) -> None:
        for org in await store.all_orgs():
            self.org_saved(org)
        for product in await store.all_products():
            self.products[product.productKey] = ProductCredential(product, 0)
        for device in await store.all_devices():
            self._put(device)
        self.revoked.update(await store.revoked_serials())
        for serial, product_key, device_key in await store.live_certificates():
            self.certificates.setdefault((product_key, device_key), set()).add(serial)
        for topo in await store.all_topology():
            gateway = (topo.gatewayProductKey, topo.gatewayDeviceKey)
            self.topology_changed(topo.productKey, topo.deviceKey, gateway)
        self.codes.ledger = store
        self.codes.load(await store.all_activation_codes())

    def _put(self, device: Device) -> DeviceCredential:
        key = (device.productKey, device.deviceKey)
        old = self.devices.get(key)
        activated = device.activatedAt is not None or (old is not None and old.activated)
        entry = DeviceCredential(
            device.orgId, device.deviceSecret, device.enabled, activated, device.assetId
        )
        self.devices[key] = entry
        product = self.products.get(device.productKey)
        if product is not None and activated and not (old is not None and old.activated):
            product.activated += 1
        return entry

    def mark_activated(self, product_key: str, device_key: str) -> bool:
        """Record a device's first admission; True if this was it."""
        entry = self.devices.get((product_key, device_key))
        if entry is None or entry.activated:
            return False
        entry.activated = True
        product = self.products.get(product_key)
        if product is not None:
            product.activated += 1
        return True

    def activation_refused(self, key: DeviceId, now_ms: int) -> tuple[str, str] | None:
        """Why the device may not activate or connect now, as (reason, message): the
        product's activation quota, or its activation codes. None if it may."""
        product = self.products.get(key[0])
        device = self.devices.get(key)
        if product is None or device is None:
            return None
        quota = product.product.settings.activationQuota
        if not device.activated and product.quota_left == 0:
            return "activation-quota", f"the product's activation quota ({quota}) is used up"
        if not self.codes.admissible(key, now_ms):
            return (
                "activation-code",
                f"product {key[0]} has no activation code left for the device; purchase more",
            )
        return None

    def _codes_ran_out(self, key: DeviceId) -> None:
        """The device's activation code ended and none is left: it is inactive again,
        and an online one is logged out."""
        entry = self.devices.get(key)
        if entry is None:
            return
        if entry.activated:
            entry.activated = False
            product = self.products.get(key[0])
            if product is not None:
                product.activated -= 1
            self.codes.deactivated(key)
        if self.on_revoked is not None:
            self.on_revoked(key[0], key[1], False)

    # -- RegistryObserver ----------------------------------------------------------------

    def devices_saved(self, devices: Sequence[Device]) -> None:
        for device in devices:
            if not self._put(device).enabled and self.on_revoked is not None:
                self.on_revoked(device.productKey, device.deviceKey, False)

    def device_deleted(self, product_key: str, device_key: str) -> None:
        key = (product_key, device_key)
        # The registry's topology rows go with the device, as sub-device and as gateway.
        self.topology_changed(product_key, device_key, None)
        for sub in self.children.pop(key, set()):
            self.gateway_of.pop(sub, None)
        # The registry revoked the device's certificates along with it.
        self.revoked.update(self.certificates.pop(key, set()))
        self.codes.forget_device(key)
        entry = self.devices.pop(key, None)
        product = self.products.get(product_key)
        if entry is not None and entry.activated and product is not None:
            product.activated -= 1
        if self.on_revoked is not None:
            self.on_revoked(product_key, device_key, True)

    def product_saved(self, product: Product) -> None:
        old = self.products.get(product.productKey)
        self.products[product.productKey] = ProductCredential(
            product, old.activated if old is not None else 0
        )

    def product_deleted(self, product_key: str) -> None:
        self.products.pop(product_key, None)
        self.codes.forget_product(product_key)

    def activation_codes_added(self, codes: Sequence[ActivationCode]) -> None:
        self.codes.add(codes)

    def org_saved(self, org: Organization) -> None:
        self.apps[org.accessKey] = AppCredential(org.orgId, org.secretHash)

    def topology_changed(self, product_key: str, device_key: str, gateway: DeviceId | None) -> None:
        key = (product_key, device_key)
        old = self.gateway_of.pop(key, None)
        if old is not None:
            siblings = self.children.get(old)
            if siblings is not None:
                siblings.discard(key)
                if not siblings:
                    del self.children[old]
        if gateway is not None:
            self.gateway_of[key] = gateway
            self.children.setdefault(gateway, set()).add(key)

    def certificate_issued(self, cert: Certificate) -> None:
        self.certificates.setdefault((cert.productKey, cert.deviceKey), set()).add(cert.certSN)

    def certificate_revoked(self, serial: str) -> None:
        self.revoked.add(serial)
        if self.on_certificate_revoked is not None:
            self.on_certificate_revoked(serial)

    def certificate_is_current(self, product_key: str, device_key: str, serial: str) -> bool:
        """Whether `serial` is one of this device's certificates and not revoked."""
        return serial in self.certificates.get((product_key, device_key), ()) and (
            serial not in self.revoked
        )
