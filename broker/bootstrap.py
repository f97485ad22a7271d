"""The first organisation of a new data directory, and the credentials file beside it."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import orjson

from registry import Registry

CREDENTIALS_FILE = "credentials.json"
ENV_ORG = "GATEHOUSE_ORG_ID"
ENV_KEY = "GATEHOUSE_ACCESS_KEY"
ENV_SECRET = "GATEHOUSE_ACCESS_SECRET"  # noqa: S105 (a variable's name, not a secret)


@dataclass(frozen=True, slots=True)
class Credentials:
    org_id: str
    access_key: str
    access_secret: str

    @classmethod
    def from_env(cls) -> Credentials | None:
        key, secret = os.environ.get(ENV_KEY), os.environ.get(ENV_SECRET)
        if not key or not secret:
            return None
        return cls(os.environ.get(ENV_ORG, ""), key, secret)

    @classmethod
    def from_file(cls, path: Path) -> Credentials:
        data = orjson.loads(path.read_bytes())
        return cls(data["orgId"], data["accessKey"], data["accessSecret"])

    def save(self, path: Path) -> None:
        body = {
            "orgId": self.org_id,
            "accessKey": self.access_key,
            "accessSecret": self.access_secret,
        }
        # Create with 0600 from the start: the secret must never be readable by others.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(orjson.dumps(body, option=orjson.OPT_INDENT_2) + b"\n")
        path.chmod(0o600)


async def first_organization(registry: Registry, data_dir: Path) -> Credentials | None:
    """On a new registry, create the admin organisation; returns its credentials then."""
    if await registry.has_orgs():
        return None
    given = Credentials.from_env()
    org, secret = await registry.create_org(
        "default",
        org_id=(given.org_id or None) if given else None,
        access_key=given.access_key if given else None,
        access_secret=given.access_secret if given else None,
        admin=True,
    )
    creds = Credentials(org.orgId, org.accessKey, secret)
    path = data_dir / CREDENTIALS_FILE
    creds.save(path)
    if given is None:
        # Printed once, on purpose, to the terminal; never to the log.
        print(
            f"gatehouse: created organisation {org.orgId}\n"
            f"  access key:    {org.accessKey}\n"
            f"  access secret: {secret}\n"
            f"  (saved to {path}, mode 0600)",
            file=sys.stderr,
            flush=True,
        )
    return creds
