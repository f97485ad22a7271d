"""`gatehouse db copy SRC DST`: a whole registry from one store to another, in batches.

Every table the source has is copied with every column both stores share, parents
before children (the foreign keys), in the source's insertion order, so that lists come
out of the copy in the order they came out of the original. The target must be empty
and at the same schema version (both are migrated when opened).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from registry.errors import Conflict
from registry.store.protocols import Store

# Parents first; a table not named here (a newer one) is copied after these.
ORDER = (
    "organizations",
    "thing_models",
    "products",
    "devices",
    "bindings",
    "topology",
    "certificates",
    "commands",
    "device_log",
    "device_latest",
    "product_scripts",
)
BATCH = 5_000


@dataclass
class CopyReport:
    rows: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        total = sum(self.rows.values())
        parts = ", ".join(f"{table} {count}" for table, count in self.rows.items() if count)
        return f"copied {total} rows ({parts or 'nothing to copy'})"


async def copy_registry(
    source: Store, target: Store, progress: Callable[[str, int], None] | None = None
) -> CopyReport:
    """Copy everything from `source` to the empty `target` (both open)."""
    source_tables = await source.tables()
    target_tables = await target.tables()
    if await source.schema_version() != await target.schema_version():
        raise Conflict("the two databases are at different schema versions")
    missing = sorted(set(source_tables) - set(target_tables))
    if missing:
        raise Conflict(f"{target.location} has no table {missing[0]}")
    for table in target_tables:
        if await target.count_rows(table):
            raise Conflict(
                f"{target.location} is not empty (table {table} has rows); copy into a new one"
            )
    tables = [t for t in ORDER if t in source_tables]
    tables += sorted(set(source_tables) - set(ORDER))
    report = CopyReport()
    for table in tables:
        columns = [c for c in source_tables[table] if c in target_tables[table]]
        copied = 0
        async for rows in source.read_table(table, columns, BATCH):
            await target.write_table(table, columns, rows)
            copied += len(rows)
            if progress is not None:
                progress(table, copied)
        report.rows[table] = copied
    await target.after_copy()
    return report
