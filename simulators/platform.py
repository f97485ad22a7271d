"""What the simulators need of a platform's REST API (EnOS connection-service shape):
credentials from the environment or a data directory, and provisioning calls.

Plain httpx; the simulators import nothing of gatehouse's but `broker.protocol`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

from simulators.device import DeviceCredentials


class PlatformError(Exception):
    pass


def with_mandatory(body: Mapping[str, Any]) -> dict[str, Any]:
    """A products?action=create body with the fields EnOS makes mandatory that it leaves
    out filled in: productType (Gateway for a gateway, else Device), dataFormat Json,
    biDirectionalAuth false. productName and modelId stay the caller's to give."""
    product_type = "Gateway" if body.get("deviceType") == "gateway" else "Device"
    return {"productType": product_type, "dataFormat": "Json", "biDirectionalAuth": False, **body}


@dataclass(frozen=True, slots=True)
class OrgCredentials:
    org_id: str
    access_key: str
    access_secret: str

    @classmethod
    def find(cls, data_dir: Path) -> OrgCredentials:
        key, secret = (
            os.environ.get("GATEHOUSE_ACCESS_KEY"),
            os.environ.get("GATEHOUSE_ACCESS_SECRET"),
        )
        if key and secret:
            return cls(os.environ.get("GATEHOUSE_ORG_ID", ""), key, secret)
        path = data_dir / "credentials.json"
        if path.exists():
            try:
                data = orjson.loads(path.read_bytes())
                return cls(data["orgId"], data["accessKey"], data["accessSecret"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise PlatformError(
                    f"cannot read credentials from {path.resolve()}: {exc}"
                ) from None
        unset = [
            n for n in ("GATEHOUSE_ACCESS_KEY", "GATEHOUSE_ACCESS_SECRET") if not os.environ.get(n)
        ]
        raise PlatformError(
            f"no credentials: {' and '.join(unset)} not set in the environment, and no"
            f" {path.resolve()} (give --data-dir, or set GATEHOUSE_ACCESS_KEY,"
            " GATEHOUSE_ACCESS_SECRET and GATEHOUSE_ORG_ID)"
        )


class Platform:
    def __init__(self, url: str, creds: OrgCredentials, timeout: float = 120.0) -> None:
        self.creds = creds
        self.http = httpx.Client(
            base_url=url.rstrip("/"), auth=(creds.access_key, creds.access_secret), timeout=timeout
        )

    def close(self) -> None:
        self.http.close()

    def call(self, resource: str, action: str, body: Any = None, **query: Any) -> Any:
        params = {"action": action, **query}
        if self.creds.org_id:
            params["orgId"] = self.creds.org_id
        try:
            response = self.http.post(
                f"/connect-service/v2.1/{resource}",
                params=params,
                content=orjson.dumps(body or {}),
                headers={"content-type": "application/json"},
            )
            envelope = response.json()
        except httpx.HTTPError as exc:
            raise PlatformError(f"cannot reach the API at {self.http.base_url}: {exc}") from None
        except ValueError as exc:
            raise PlatformError(f"{resource}?action={action}: not JSON: {exc}") from None
        if envelope.get("code") != 0:
            raise PlatformError(f"{resource}?action={action}: {envelope.get('msg')}")
        return envelope.get("data")

    def thing_model(self, product_key: str) -> dict[str, Any]:
        product = self.call("products", "get", productKey=product_key)
        model: dict[str, Any] = self.call("thing-models", "get", modelId=product["modelId"])
        return model["tsl"]  # type: ignore[no-any-return]

    def newest_refusal(self, product_key: str, device_key: str) -> dict[str, Any] | None:
        """The newest refused CONNECT in the device's log (`time`, `code`, `detail`)."""
        entries = self.call(
            "devices",
            "listMessages",
            productKey=product_key,
            deviceKey=device_key,
            kind="refused",
            limit=1,
        )
        return entries[0] if entries else None

    def ensure_model(self, model_id: str, tsl: dict[str, Any]) -> None:
        try:
            self.call("thing-models", "get", modelId=model_id)
        except PlatformError:
            self.call("thing-models", "create", {"modelId": model_id, "tsl": tsl})

    def create_product(self, name: str, model_id: str, **settings: Any) -> str:
        body = with_mandatory({"productName": name, "modelId": model_id, **settings})
        key: str = self.call("products", "create", body, **self._org())
        return key

    def _org(self) -> dict[str, str]:
        """The orgId query products?action=create requires, asked of the API when the
        credentials leave it out (GATEHOUSE_ORG_ID unset)."""
        if self.creds.org_id:
            return {}
        org_id: str = self.call("organizations", "get")["orgId"]
        return {"orgId": org_id}

    def create_devices(
        self, product_key: str, keys: Sequence[str], secret_prefix: str
    ) -> list[DeviceCredentials]:
        """Devices with known keys and secrets, 10,000 a request."""
        created = []
        for start in range(0, len(keys), 10_000):
            part = keys[start : start + 10_000]
            body = {
                "deviceList": [
                    {
                        "productKey": product_key,
                        "deviceKey": key,
                        "deviceSecret": f"{secret_prefix}{key}",
                        "deviceName": key,
                        "timezone": "+00:00",
                    }
                    for key in part
                ]
            }
            for device in self.call("devices", "batchCreate", body):
                created.append(
                    DeviceCredentials(
                        device["productKey"], device["deviceKey"], device["deviceSecret"]
                    )
                )
        return created

    def add_subdevices(self, gateway: DeviceCredentials, subs: Sequence[DeviceCredentials]) -> None:
        self._topology("addSubDevice", gateway, subs)

    def remove_subdevices(
        self, gateway: DeviceCredentials, subs: Sequence[DeviceCredentials]
    ) -> None:
        self._topology("deleteSubDevice", gateway, subs)

    def _topology(
        self, action: str, gateway: DeviceCredentials, subs: Sequence[DeviceCredentials]
    ) -> None:
        for start in range(0, len(subs), 1000):
            body = {
                "subDevices": [
                    {"productKey": s.product_key, "deviceKey": s.device_key}
                    for s in subs[start : start + 1000]
                ]
            }
            self.call(
                "device-topos",
                action,
                body,
                productKey=gateway.product_key,
                deviceKey=gateway.device_key,
            )
