"""One API call as the action handlers see it: who asks, the query and the JSON body."""

from __future__ import annotations

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

    def page(self) -> Page:
        source = self.body if isinstance(self.body, Mapping) else {}
        pagination = source.get("pagination") if isinstance(source, Mapping) else None
        pagination = pagination if isinstance(pagination, Mapping) else {}
        return Page.of(
            self.query.get("pageNo") or pagination.get("pageNo"),
            self.query.get("pageSize") or pagination.get("pageSize"),
        )

    async def device(self) -> Device:
        """The device the query names, by productKey and deviceKey or by assetId."""
        return await self.registry.get_device(
            self.org.orgId,
            product_key=self.query.get("productKey"),
            device_key=self.query.get("deviceKey"),
            asset_id=self.query.get("assetId"),
        )


Handler = Callable[[Call], Awaitable[Response]]


def pagination(page: Page, total: int) -> dict[str, int]:
    return {"pageNo": page.number, "pageSize": page.size, "totalSize": total}
