"""The API's document and its pages: `/openapi.json` typed from broker/api/schemas.py,
Swagger UI at `/docs` from assets served here (fastapi-offline's copy of Swagger UI 5,
pinned; nothing from a CDN), and unknown routes and methods answered in the EnOS
envelope instead of FastAPI's `{"detail": ...}`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.exceptions import HTTPException
from starlette.responses import FileResponse, Response

from broker.api.envelope import error
from broker.api.schemas import error_responses, openapi_paths

ASSETS = Path(fastapi_offline.__file__).parent / "static"
# The only files served from ASSETS, by name: nothing else under it is reachable.
ASSET_TYPES = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon.png": "image/png",
}
DOCS = "/docs"

# Status -> code for what the router answers itself (no route, a method it has not).
ROUTER_CODES = {404: 99404, 405: 99405}


def _stream_operation() -> dict[str, Any]:
    return {
        "summary": "a live stream of the organisation's messages (Server-Sent Events)",
        "operationId": "stream",
        "tags": ["stream"],
        "parameters": [
            {
                "name": "productKey",
                "in": "query",
                "required": False,
                "schema": {"type": "string"},
                "description": "products, comma-separated (none: every product)",
            },
            {
                "name": "kinds",
                "in": "query",
                "required": False,
                "schema": {"type": "string"},
                "description": "measurepoints, events, online, offline, commands; comma-separated",
            },
            {
                "name": "Last-Event-ID",
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
                "description": "the id of the last event received: resume after it",
            },
        ],
        "responses": {
            "200": {
                "description": "events `id`, `event` (the kind), `data` (JSON)",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            },
            **error_responses(),
        },
    }


def _metrics_operation() -> dict[str, Any]:
    return {
        "summary": "Prometheus metrics (the admin organisation's Basic auth)",
        "operationId": "metrics",
        "tags": ["metrics"],
        "responses": {
            "200": {
                "description": "Prometheus's text format",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
            **error_responses(),
        },
    }


def build_document(
    app: FastAPI,
    prefix: str,
    resources: Mapping[str, Mapping[str, Any]],
    *,
    stream: bool,
    metrics: bool,
) -> dict[str, Any]:
    paths, components = openapi_paths(prefix, resources)
    if stream:
        paths[f"{prefix}/stream"] = {"get": _stream_operation()}
    if metrics:
        paths["/metrics"] = {"get": _metrics_operation()}
    return {
        "openapi": "3.1.0",
        "info": {"title": app.title, "version": app.version, "description": app.description},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "basicAuth": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "your access key and access secret",
                }
            },
        },
        "security": [{"basicAuth": []}],
    }


def install_docs(
    app: FastAPI,
    prefix: str,
    resources: Mapping[str, Mapping[str, Any]],
    *,
    stream: bool = False,
    metrics: bool = False,
) -> None:
    """The typed document, Swagger UI served locally, and the envelope for the router's
    own 404 and 405. `app` must have been made with docs_url=None, redoc_url=None."""
    document: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if not document:
            document.update(build_document(app, prefix, resources, stream=stream, metrics=metrics))
        return document

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get(DOCS, include_in_schema=False)
    async def swagger_ui() -> Response:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title}: API",
            swagger_js_url=f"{DOCS}/assets/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS}/assets/swagger-ui.css",
            swagger_favicon_url=f"{DOCS}/assets/favicon.png",
            # No badge from the public validator: the page needs nothing from outside.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get(DOCS + "/assets/{name}", include_in_schema=False)
    async def asset(name: str) -> Response:
        media_type = ASSET_TYPES.get(name)
        if media_type is None:
            return error(404, ROUTER_CODES[404], f"no such asset {name!r:.60}")
        return FileResponse(ASSETS / name, media_type=media_type)

    @app.exception_handler(HTTPException)
    async def router_error(request: Request, exc: HTTPException) -> Response:
        code = ROUTER_CODES.get(exc.status_code, 99000 + exc.status_code)
        if exc.status_code == 404:
            msg = f"no such route: {request.method} {request.url.path[:200]}"
        elif exc.status_code == 405:
            allowed = (exc.headers or {}).get("Allow", "")
            msg = f"{request.method} is not answered on {request.url.path[:200]}; use {allowed}"
        else:
            msg = str(exc.detail)
        return error(exc.status_code, code, msg, dict(exc.headers) if exc.headers else None)
