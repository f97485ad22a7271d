"""A small client of gatehouse's REST API, for the CLI and scripts."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx

from broker.bootstrap import CREDENTIALS_FILE, ENV_KEY, ENV_ORG, ENV_SECRET, Credentials

DEFAULT_URL = "http://127.0.0.1:8080"


class ApiError(Exception):
    """An answer of the API that is not a success, or no answer at all (status 0)."""

    def __init__(self, status: int, code: int, msg: str) -> None:
        # A local failure (no credentials, no connection) has no HTTP status or code.
        super().__init__(f"{msg} (HTTP {status}, code {code})" if status else msg)
        self.status = status
        self.code = code
        self.msg = msg


def find_credentials(data_dir: Path) -> Credentials:
    """The environment's credentials, or else those a local `gatehouse serve` saved;
    when there are none, the error says where it looked."""
    creds = Credentials.from_env()
    if creds is not None:
        return creds
    path = data_dir / CREDENTIALS_FILE
    if path.exists():
        try:
            return Credentials.from_file(path)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ApiError(0, 0, f"cannot read credentials from {path.resolve()}: {exc}") from None
    unset = [name for name in (ENV_KEY, ENV_SECRET) if not os.environ.get(name)]
    raise ApiError(
        0,
        0,
        f"no credentials: {' and '.join(unset)} not set in the environment, and no"
        f" {path.resolve()} (give --data-dir, or set {ENV_KEY}, {ENV_SECRET} and {ENV_ORG})",
    )


class ApiClient:
    def __init__(self, url: str, creds: Credentials, timeout: float = 60.0) -> None:
        self.creds = creds
        self._http = httpx.Client(
            base_url=url.rstrip("/"),
            auth=(creds.access_key, creds.access_secret),
            timeout=timeout,
        )

    @classmethod
    def from_env(cls, url: str | None = None, data_dir: Path | None = None) -> ApiClient:
        url = url or os.environ.get("GATEHOUSE_URL") or DEFAULT_URL
        return cls(url, find_credentials(data_dir or Path("gatehouse-data")))

    def close(self) -> None:
        self._http.close()

    def call(
        self, resource: str, action: str, body: Any = None, wait: float | None = None, **query: Any
    ) -> Any:
        """POST one action; returns the envelope's data or raises ApiError. `wait` is how
        long to wait for the answer, for calls the server holds (synchronous commands)."""
        return self.call_full(resource, action, body, wait, **query)["data"]

    def call_full(
        self, resource: str, action: str, body: Any = None, wait: float | None = None, **query: Any
    ) -> Any:
        params = {"action": action, **{k: v for k, v in query.items() if v is not None}}
        if self.creds.org_id:
            params.setdefault("orgId", self.creds.org_id)
        try:
            response = self._http.post(
                f"/connect-service/v2.1/{resource}",
                params=params,
                json=body or {},
                timeout=wait if wait is not None else self._http.timeout,
            )
        except httpx.HTTPError as exc:
            raise ApiError(0, 0, f"cannot reach {self._http.base_url}: {exc}") from None
        try:
            envelope = response.json()
        except ValueError:
            raise ApiError(response.status_code, 0, response.text[:200]) from None
        if response.status_code != 200 or envelope.get("code") != 0:
            raise ApiError(response.status_code, envelope.get("code", 0), envelope.get("msg", ""))
        return envelope

    def pages(self, resource: str, action: str, size: int = 1000, **query: Any) -> list[Any]:
        """Every item of a paged list."""
        items: list[Any] = []
        page = 1
        while True:
            envelope = self.call_full(resource, action, pageNo=page, pageSize=size, **query)
            items.extend(envelope["data"])
            total = envelope.get("pagination", {}).get("totalSize", len(items))
            if len(items) >= total or not envelope["data"]:
                return items
            page += 1
