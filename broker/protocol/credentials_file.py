"""The credentials file (CSV or JSON) that `gatehouse device export` writes and the
simulators and load runner read: one exchange format, in one place."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

FIELDS = ("productKey", "deviceKey", "deviceSecret", "assetId")


def write_credentials(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """CSV when the name ends in .csv, JSON otherwise; mode 0600, as it holds secrets."""
    if path.suffix.lower() == ".csv":
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        data = text.getvalue().encode()
    else:
        data = orjson.dumps(list(rows), option=orjson.OPT_INDENT_2) + b"\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def read_credentials(path: Path) -> list[dict[str, str]]:
    if path.suffix.lower() == ".csv":
        with path.open(newline="") as source:
            return [dict(row) for row in csv.DictReader(source)]
    rows = orjson.loads(path.read_bytes())
    if not isinstance(rows, list):
        raise ValueError(f"{path} must hold a JSON list of credentials")
    return rows
