"""One API call as the action handlers see it: who asks, the query and the JSON body."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response

from registry import Device, InvalidArgument, Organization, Page, Registry


@dataclass(frozen=True, slots=True)
class Call:
    registry: Registry
    org: Organization
    query: Mapping[str, str]
    body: Any

    def param(self, name: str) -> str:
        """A required query parameter."""
        value = self.query.get(name)
        if not value:
            raise InvalidArgument(f"query parameter {name} is required")
        return value

    def field(self, name: str) -> str:
        """A required string field of the body."""
        value = self.body.get(name) if isinstance(self.body, Mapping) else None
        if not isinstance(value, str) or not value:
            raise InvalidArgument(f"body field {name} is required (a string)")
        return value

    def base64_field(self, name: str) -> bytes:
        """A required body field of bytes, in base64."""
        body = self.body if isinstance(self.body, Mapping) else {}
        if name not in body:
            raise InvalidArgument(f"body field {name} is required")
        encoded = body[name]
        if not isinstance(encoded, str):
            raise InvalidArgument(f"{name} must be a base64 string")
        try:
            return base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidArgument(f"{name} is not valid base64") from None

    def page(self) -> Page:
        source = self.body if isinstance(self.body, Mapping) else {}
        pagination = source.get("pagination") if isinstance(source, Mapping) else None
        pagination = pagination if isinstance(pagination, Mapping) else {}
        number = _whole("pageNo", self.query.get("pageNo") or pagination.get("pageNo"), MAX_PAGE)
        size = _whole("pageSize", self.query.get("pageSize") or pagination.get("pageSize"), 1000)
        return Page.of(number, size)

    async def device(self) -> Device:
        """The device the query names, by productKey and deviceKey or by assetId."""
        return await self.registry.get_device(
            self.org.orgId,
            product_key=self.query.get("productKey"),
            device_key=self.query.get("deviceKey"),
            asset_id=self.query.get("assetId"),
        )


Handler = Callable[[Call], Awaitable[Response]]

# Far beyond any real listing, and small enough that no offset overflows SQLite's integers.
MAX_PAGE = 1_000_000


def _whole(name: str, value: Any, most: int) -> int | None:
    """A page number or size from the query (text) or the body (a JSON number), or None."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        number = int(value) if len(value) <= 12 else most + 1
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value) if abs(value) <= most else most + 1
    else:
        raise InvalidArgument(f"{name} must be a whole number, not {value!r:.40}")
    if not 1 <= number <= most:
        raise InvalidArgument(f"{name} must be 1 to {most}, not {value!r:.40}")
    return number


def pagination(page: Page, total: int) -> dict[str, int]:
    return {"pageNo": page.number, "pageSize": page.size, "totalSize": total}
