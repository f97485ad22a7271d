"""`/categories` (the catalogue of product categories) and `/projects` actions."""

from __future__ import annotations

from starlette.responses import Response

from broker.api.calls import Call, Handler
from broker.api.envelope import ok
from registry import NotFound
from registry.catalogue import BY_ID, CATALOGUE


async def list_categories(call: Call) -> Response:
    return ok([c.view() for c in CATALOGUE])


async def get_category(call: Call) -> Response:
    found = BY_ID.get(call.param("categoryId"))
    if found is None:
        raise NotFound(f"category {call.query.get('categoryId')!r} does not exist")
    return ok(found.view())


async def create_project(call: Call) -> Response:
    project = await call.registry.create_project(call.org.orgId, call.body)
    return ok(project.view())


async def list_projects(call: Call) -> Response:
    return ok([p.view() for p in await call.registry.list_projects(call.org.orgId)])


CATEGORY_ACTIONS: dict[str, Handler] = {"list": list_categories, "get": get_category}
PROJECT_ACTIONS: dict[str, Handler] = {"create": create_project, "list": list_projects}
