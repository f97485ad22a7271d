"""Console sessions: sign in once with an organisation's access key and secret, then call
the API with a session cookie instead of HTTP Basic auth.

`POST /console/session` with `{"accessKey", "accessSecret"}` checks them as Basic auth
does and answers `{orgId, name, csrfToken}` with the cookie `gatehouse_session`
(HttpOnly, SameSite=Strict, Path=/, Secure when the request came over TLS). The cookie
holds only a random token; the secret is never kept, shown or put in a URL. `GET` says
who is signed in (and the CSRF token again, for a reloaded page); `DELETE` ends it.

An API call that carries the cookie and no Authorization header is the console's: it
must also carry the session's CSRF token in `X-Gatehouse-CSRF` when it can change
something (every POST), so a page of another site cannot act with it (SameSite already
keeps the cookie off its requests; the token is the second lock). GETs (the live
stream) need only the cookie. Sessions live in memory, are bounded, end after
`IDLE_SECONDS` unused or `MAX_SECONDS` in all, and end with the process.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from broker.api.envelope import error, ok
from registry import Forbidden, InvalidArgument, Organization, Registry, RegistryError, Unauthorized

COOKIE = "gatehouse_session"
CSRF_HEADER = "x-gatehouse-csrf"
SESSION_PATH = "/console/session"
IDLE_SECONDS = 8 * 3600.0
MAX_SECONDS = 24 * 3600.0
MAX_SESSIONS = 1000  # the oldest is ended when one more signs in
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class SessionEnded(Unauthorized):
    """A console cookie that names no live session: sign in again."""


@dataclass(slots=True)
class Session:
    org: Organization
    csrf: str
    started: float
    used: float = field(default=0.0)


class Sessions:
    """The live sessions, by the SHA-256 of their cookie token (a leaked memory dump or
    log line of the table gives no usable cookie)."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._by_hash: OrderedDict[str, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._by_hash)

    @staticmethod
    def _hash(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    def open(self, org: Organization) -> tuple[str, Session]:
        now = self._clock()
        while len(self._by_hash) >= MAX_SESSIONS:
            self._by_hash.popitem(last=False)
        token = secrets.token_urlsafe(32)
        session = Session(org, secrets.token_urlsafe(32), now, now)
        self._by_hash[self._hash(token)] = session
        return token, session

    def get(self, token: str) -> Session | None:
        key = self._hash(token)
        session = self._by_hash.get(key)
        if session is None:
            return None
        now = self._clock()
        if now - session.used > IDLE_SECONDS or now - session.started > MAX_SECONDS:
            del self._by_hash[key]
            return None
        session.used = now
        self._by_hash.move_to_end(key)
        return session

    def close(self, token: str) -> bool:
        return self._by_hash.pop(self._hash(token), None) is not None


def is_console_call(request: Request) -> bool:
    """A call authenticated by the session cookie (no Authorization header given)."""
    return "authorization" not in request.headers and COOKIE in request.cookies


def session_org(request: Request) -> Organization:
    """The organisation of the request's console session; SessionEnded when the cookie
    names none, Forbidden when a state-changing call lacks the session's CSRF token."""
    sessions: Sessions = request.app.state.sessions
    session = sessions.get(request.cookies[COOKIE])
    if session is None:
        raise SessionEnded("the console session has ended; sign in again")
    if request.method not in SAFE_METHODS:
        given = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(given.encode(), session.csrf.encode()):
            raise Forbidden(f"a console call must carry the session's {CSRF_HEADER} header")
    return session.org


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _view(session: Session) -> dict[str, Any]:
    return {"orgId": session.org.orgId, "name": session.org.name, "csrfToken": session.csrf}


async def sign_in(request: Request) -> Response:
    try:
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            raise InvalidArgument("the body must be JSON: {accessKey, accessSecret}") from None
        if not isinstance(body, dict):
            raise InvalidArgument("the body must be a JSON object: {accessKey, accessSecret}")
        key, secret = body.get("accessKey"), body.get("accessSecret")
        if not isinstance(key, str) or not key:
            raise InvalidArgument("accessKey is required")
        if not isinstance(secret, str) or not secret:
            raise InvalidArgument("accessSecret is required")
        registry: Registry = request.app.state.registry
        org = await registry.authenticate(key, secret)
    except RegistryError as exc:
        return error(exc.status, exc.code, exc.msg)  # no Basic challenge: a form asked
    sessions: Sessions = request.app.state.sessions
    old = request.cookies.get(COOKIE)
    if old:
        sessions.close(old)  # a new sign-in never keeps an older token alive
    token, session = sessions.open(org)
    response = ok(_view(session))
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(MAX_SECONDS),
        path="/",
        secure=_secure(request),
        httponly=True,
        samesite="strict",
    )
    return response


async def whoami(request: Request) -> Response:
    sessions: Sessions = request.app.state.sessions
    token = request.cookies.get(COOKIE)
    session = sessions.get(token) if token else None
    if session is None:
        failure = SessionEnded("not signed in")
        return error(failure.status, failure.code, failure.msg)
    return ok(_view(session))


async def sign_out(request: Request) -> Response:
    """Ends the session (the CSRF token is required: another site cannot sign you out)."""
    token = request.cookies.get(COOKIE)
    if token:
        try:
            session_org(request)
        except SessionEnded:
            pass  # already over: clearing the cookie is all there is to do
        except RegistryError as exc:
            return error(exc.status, exc.code, exc.msg)
        request.app.state.sessions.close(token)
    response = ok()
    response.delete_cookie(
        COOKIE, path="/", secure=_secure(request), httponly=True, samesite="strict"
    )
    return response


def session_routes() -> list[Route]:
    return [
        Route(SESSION_PATH, sign_in, methods=["POST"]),
        Route(SESSION_PATH, whoami, methods=["GET"]),
        Route(SESSION_PATH, sign_out, methods=["DELETE"]),
    ]
