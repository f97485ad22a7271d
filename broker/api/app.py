"""The HTTP face of the registry, in EnOS's connection-service shape.

Every call is `POST /connect-service/v2.1/{resource}?action={verb}&orgId={org}` with
HTTP Basic auth (access key, access secret). One route per resource dispatches on
`action`; the handlers live in one module per resource.
"""

import base64
import binascii
import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.responses import Response

from broker.api.access_keys import ACCESS_KEY_ACTIONS
from broker.api.activation_codes import CODE_ACTIONS
from broker.api.bindings import BINDING_ACTIONS
from broker.api.broker_stats import StatsSource, Sync, broker_actions
from broker.api.calls import Call, Handler
from broker.api.catalogue import CATEGORY_ACTIONS, PROJECT_ACTIONS
from broker.api.certificates import CERTIFICATE_ACTIONS
from broker.api.commands import command_actions
from broker.api.connection import connection_actions
from broker.api.device_topos import topo_actions
from broker.api.devices import DEVICE_ACTIONS, connect_block_actions, publish_actions
from broker.api.docs import install_docs
from broker.api.envelope import EnvelopeResponse, error
from broker.api.limits import DEFAULT_MAX_BODY, MAX_JSON_DEPTH, BodyLimit, too_deep
from broker.api.live_stream import stream_endpoint
from broker.api.messages import MESSAGE_ACTIONS
from broker.api.metrics import Metrics, metrics_endpoint
from broker.api.organizations import ORG_ACTIONS
from broker.api.permissions import check_permission
from broker.api.product_scripts import SCRIPT_ACTIONS
from broker.api.products import IMAGE_ACTIONS, PRODUCT_ACTIONS, STATISTICS_ACTIONS
from broker.api.session import Sessions, is_console_call, session_org, session_routes
from broker.api.subscriptions import subscription_actions
from broker.api.thing_models import MODEL_ACTIONS
from broker.api.webhooks import webhook_actions
from broker.console import mount_console
from broker.gate.commands import CommandService
from broker.gate.connect_guard import ConnectGuard
from broker.gate.custom_downlink import CustomDownlink
from broker.gate.gateways import GatewayService
from broker.streams.hub import StreamHub
from registry import (
    Forbidden,
    InvalidArgument,
    Organization,
    Registry,
    RegistryError,
    Unauthorized,
)

log = logging.getLogger(__name__)

API_PREFIX = "/connect-service/v2.1"
# EnOS serves batch create under v2.0; gatehouse answers every resource on both.
LEGACY_PREFIX = "/connect-service/v2.0"

RESOURCES: dict[str, dict[str, Handler]] = {
    "products": PRODUCT_ACTIONS,
    "devices": DEVICE_ACTIONS,
    "thing-models": MODEL_ACTIONS,
    "statistics": STATISTICS_ACTIONS,
    "bindings": BINDING_ACTIONS,
    "organizations": ORG_ACTIONS,
    "device-certificates": CERTIFICATE_ACTIONS,
    "product-scripts": SCRIPT_ACTIONS,
    "product-images": IMAGE_ACTIONS,
    "categories": CATEGORY_ACTIONS,
    "projects": PROJECT_ACTIONS,
    "messages": MESSAGE_ACTIONS,
    "activation-codes": CODE_ACTIONS,
    "access-keys": ACCESS_KEY_ACTIONS,
}


def _credentials(request: Request) -> tuple[str, str]:
    header = request.headers.get("authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        raise Unauthorized("HTTP Basic auth with your access key and secret is required")
    try:
        key, sep, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthorized("the Authorization header is not valid Basic auth") from None
    if not sep:
        raise Unauthorized("the Authorization header is not valid Basic auth")
    return key, secret


async def _authenticate(request: Request) -> Organization:
    if is_console_call(request):  # the console's session cookie (broker/api/session.py)
        return session_org(request)
    registry: Registry = request.app.state.registry
    return await registry.authenticate(*_credentials(request))


async def _body(request: Request) -> Any:
    raw = await request.body()  # its size is bounded already (BodyLimit)
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidArgument(f"the body is not valid JSON: {exc}") from None
    where = too_deep(body)
    if where is not None:
        raise InvalidArgument(f"body field {where} nests deeper than {MAX_JSON_DEPTH} levels")
    return body


def _route(name: str, actions: dict[str, Handler]) -> Any:
    """A plain Starlette endpoint: FastAPI's per-request dependency solving is a good
    share of a synchronous command's time, and the document is built from `actions`."""
    known = ", ".join(actions)

    async def endpoint(request: Request) -> Response:
        action = request.query_params.get("action")
        if action is None:  # as FastAPI's validation of a required query parameter said
            return error(400, InvalidArgument.code, "invalid request: query.action Field required")
        orgId = request.query_params.get("orgId")
        try:
            return await _dispatch(request, action, orgId)
        except RegistryError as exc:
            challenge = exc.status == 401 and not is_console_call(request)
            headers = {"WWW-Authenticate": 'Basic realm="gatehouse"'} if challenge else None
            return error(exc.status, exc.code, exc.msg, headers)
        except Exception:
            log.exception("unexpected error in %s?action=%s", name, action)
            return error(500, 99500, "internal error; the server log has the details")

    async def _dispatch(request: Request, action: str, orgId: str | None) -> Response:
        registry: Registry = request.app.state.registry
        org = await _authenticate(request)
        if orgId is not None and orgId != org.orgId:
            raise Forbidden(f"your access key does not belong to organisation {orgId!r}")
        handler = actions.get(action)
        if handler is None:
            raise InvalidArgument(f"unknown action {action!r} for {name}; use one of: {known}")
        check_permission(org, name, action)
        call = Call(registry, org, request.query_params, await _body(request))
        return await handler(call)

    endpoint.__name__ = f"{name.replace('-', '_')}_actions"
    return endpoint


def create_app(
    registry: Registry,
    stats: StatsSource | None = None,
    gateways: GatewayService | None = None,
    commands: CommandService | None = None,
    guard: ConnectGuard | None = None,
    *,
    max_body: int = DEFAULT_MAX_BODY,
    streams: StreamHub | None = None,
    subscribe_port: int = 0,
    metrics: Metrics | None = None,
    sync: Sync | None = None,
    mqtt_ports: tuple[int, int | None] | None = None,
    downlink: CustomDownlink | None = None,
) -> FastAPI:
    app = FastAPI(
        title="Gatehouse connection service",
        version="2.1",
        description=(
            "EnOS-shaped device management API. Authenticate with HTTP Basic auth"
            " (access key, access secret); every answer is"
            ' {"code": 0, "msg": "OK", "requestId": ..., "data": ...}.'
        ),
        default_response_class=EnvelopeResponse,
        # The typed document and Swagger UI from local assets: broker/api/docs.py.
        docs_url=None,
        redoc_url=None,
    )
    app.state.registry = registry
    app.state.sessions = Sessions()
    app.add_middleware(BodyLimit, max_body=max_body)

    resources = dict(RESOURCES)
    if stats is not None:
        resources["broker"] = broker_actions(stats, sync)
    if gateways is not None:
        resources["device-topos"] = topo_actions(gateways)
    if commands is not None:
        resources["commands"] = command_actions(commands)
    if guard is not None:
        resources["devices"] = {**DEVICE_ACTIONS, **connect_block_actions(guard)}
    if downlink is not None:
        resources["devices"] = {**resources["devices"], **publish_actions(downlink)}
    if streams is not None:
        resources["subscriptions"] = subscription_actions(streams, subscribe_port)
        resources["webhooks"] = webhook_actions(streams)
        app.add_api_route(
            f"{API_PREFIX}/stream",
            stream_endpoint(streams, _authenticate),
            methods=["GET"],
            summary="a live stream of the organisation's messages (Server-Sent Events)",
        )
    if mqtt_ports is not None:
        resources["connection"] = connection_actions(*mqtt_ports)
    if metrics is not None:
        app.add_api_route(
            "/metrics",
            metrics_endpoint(metrics, _authenticate),
            methods=["GET"],
            summary="Prometheus metrics (the admin organisation's Basic auth)",
        )
    for name, actions in resources.items():
        endpoint = _route(name, actions)
        for prefix in (API_PREFIX, LEGACY_PREFIX):
            app.router.add_route(f"{prefix}/{name}", endpoint, methods=["POST"])

    app.router.routes.extend(session_routes())
    mount_console(app)  # /console: the web console (broker/console/), on this API

    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])} {e['msg']}" for e in exc.errors()[:5]
        )
        return error(400, InvalidArgument.code, f"invalid request: {problems}")

    install_docs(
        app, API_PREFIX, resources, stream=streams is not None, metrics=metrics is not None
    )
    return app
