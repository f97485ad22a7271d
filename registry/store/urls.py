"""Which store a database URL names: `sqlite:///path/registry.db` (`sqlite:relative.db`)
or `postgresql://user[:password]@host[:port]/database` (also `postgres://`)."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from registry.errors import InvalidArgument

if TYPE_CHECKING:  # imported when a URL names them: asyncpg only for PostgreSQL
    from registry.sqlite import SqliteStore
    from registry.store.postgres import PostgresStore

SCHEMES = ("sqlite", "postgresql", "postgres")


class BadDatabaseUrl(InvalidArgument):
    pass


def without_password(url: str) -> str:
    """The URL to show in messages and logs."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = f"{parts.username}:***@{parts.hostname or ''}"
        netloc += f":{parts.port}" if parts.port else ""
    except ValueError:
        return url.split("@")[-1]
    return urlunsplit(parts._replace(netloc=netloc))


def store_for(url: str) -> SqliteStore | PostgresStore:
    """The store the URL names, not yet opened; `BadDatabaseUrl` says what is wrong."""
    shown = without_password(url)
    scheme, _, rest = url.partition(":")
    if not rest or scheme.lower() not in SCHEMES:
        raise BadDatabaseUrl(
            f"database URL {shown!r:.80}: use sqlite:///PATH or postgresql://USER@HOST/DATABASE"
        )
    if scheme.lower() == "sqlite":
        from registry.sqlite import SqliteStore

        parts = urlsplit(url)
        if parts.netloc or not parts.path:
            raise BadDatabaseUrl(
                f"database URL {shown!r:.80}: a SQLite URL is sqlite:///ABSOLUTE/PATH or"
                " sqlite:RELATIVE/PATH, with no host"
            )
        return SqliteStore(parts.path)
    from registry.store.postgres import PostgresStore

    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise BadDatabaseUrl(f"database URL {shown!r:.80}: the port is not a number") from None
    if not parts.hostname or not parts.path.strip("/"):
        raise BadDatabaseUrl(
            f"database URL {shown!r:.80}: a PostgreSQL URL names a host and a database,"
            " postgresql://USER@HOST[:PORT]/DATABASE"
        )
    return PostgresStore(url)
