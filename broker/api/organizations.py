"""`/organizations` actions: the first (admin) organisation creates the others."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import Response

from broker.api.calls import Call, Handler
from broker.api.envelope import ok
from registry import Forbidden, InvalidArgument


async def create(call: Call) -> Response:
    if not call.org.admin:
        raise Forbidden("only the admin organisation creates organisations")
    body = call.body if isinstance(call.body, Mapping) else {}
    name = body.get("name")
    if not isinstance(name, str) or not 1 <= len(name) <= 100:
        raise InvalidArgument("body field name is required (1 to 100 characters)")
    org, secret = await call.registry.create_org(name)
    return ok({"orgId": org.orgId, "accessKey": org.accessKey, "accessSecret": secret})


async def get(call: Call) -> Response:
    org = call.org
    return ok(
        {"orgId": org.orgId, "name": org.name, "accessKey": org.accessKey, "admin": org.admin}
    )


ORG_ACTIONS: dict[str, Handler] = {"create": create, "get": get}
