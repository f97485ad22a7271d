"""docs/architecture.md is the map of the house: every folder and every module at the top
of `broker/` is named in its folder table, so the map cannot fall behind the tree."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOT_SOURCE = {"__pycache__", "static", "results", "linkkit", "th_frame"}


def _table() -> str:
    text = (ROOT / "docs" / "architecture.md").read_text()
    start = text.index("## The folders")
    return text[start : text.index("\n## ", start + 1)]


def _tracked() -> list[Path]:
    """The files git tracks: what a checkout makes (data directories, builds) is no folder
    of the project's. Outside a checkout (an exported tree), every file."""
    if not (ROOT / ".git").exists():
        return [p.relative_to(ROOT) for p in ROOT.rglob("*") if p.is_file()]
    listed = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return [Path(line) for line in listed.splitlines()]


def _folders() -> list[str]:
    found = set()
    for path in _tracked():
        parts = path.parts[:-1]
        if parts and not parts[0].startswith("."):
            found.add(f"{parts[0]}/")
        if len(parts) >= 2 and parts[0] in ("broker", "registry") and parts[1] not in NOT_SOURCE:
            found.add(f"{parts[0]}/{parts[1]}/")
    return sorted(found)


def test_every_folder_is_on_the_map() -> None:
    table = _table()
    missing = [f for f in _folders() if f"`{f}`" not in table and f"`{f}" not in table]
    assert missing == []


def test_every_module_at_the_top_of_broker_is_on_the_map() -> None:
    table = _table()
    modules = sorted(
        p.name
        for p in _tracked()
        if p.parent == Path("broker") and p.suffix == ".py" and p.name != "__init__.py"
    )
    missing = [m for m in modules if m not in table]
    assert missing == []
