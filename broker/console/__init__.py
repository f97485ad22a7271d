"""The web console: Quectel Developer Center's product pages, served at `/console` on the
API's port. It is static files only (HTML, CSS and JavaScript modules written for
gatehouse, no third-party code, nothing fetched from elsewhere); the pages call the
public API and its live stream with the session cookie of broker/api/session.py, so
what the console shows is what an application could do.
"""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

STATIC = Path(__file__).parent / "static"
PREFIX = "/console"

# Only the console's own files run, and only this origin is called: an injected string
# shown by a page can neither load a script nor send anything elsewhere.
HEADERS = {
    "content-security-policy": (
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self';"
        " connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none';"
        " form-action 'self'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-cache",  # revalidated (ETag): an upgraded gatehouse shows its console
}


class _Headers:
    """Adds the console's security headers to every answer of the wrapped app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [(k.encode(), v.encode()) for k, v in HEADERS.items()]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def mount_console(app: Starlette) -> None:
    app.mount(PREFIX, _Headers(StaticFiles(directory=STATIC, html=True)), name="console")
