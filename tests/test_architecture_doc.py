"""docs/architecture.md is the map of the house: every folder and every module at the top
of `broker/` is named in its folder table, so the map cannot fall behind the tree."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOT_SOURCE = {"__pycache__", "static", "results", "linkkit", "th_frame"}


def _table() -> str:
    text = (ROOT / "docs" / "architecture.md").read_text()
    start = text.index("## The folders")
    return text[start : text.index("\n## ", start + 1)]


def _folders() -> list[str]:
    tops = [
        p for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(".") and "." not in p.name
    ]
    found = [f"{p.name}/" for p in tops]
    for package in ("broker", "registry"):
        found += [
            f"{package}/{p.name}/"
            for p in (ROOT / package).iterdir()
            if p.is_dir() and p.name not in NOT_SOURCE
        ]
    return sorted(found)


def test_every_folder_is_on_the_map() -> None:
    table = _table()
    missing = [f for f in _folders() if f"`{f}`" not in table and f"`{f}" not in table]
    assert missing == []


def test_every_module_at_the_top_of_broker_is_on_the_map() -> None:
    table = _table()
    modules = sorted(p.name for p in (ROOT / "broker").glob("*.py") if p.name != "__init__.py")
    missing = [m for m in modules if m not in table]
    assert missing == []
