"""The README's CLI and load runner sections quote every command's real `--help`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "readme_help.py"
FIX = ".venv/bin/python scripts/readme_help.py"


def readme_help(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_readme_shows_every_commands_help_as_it_is() -> None:
    checked = readme_help("--check")
    assert checked.returncode == 0, (
        f"README.md's --help blocks are out of date: run `{FIX}` and commit README.md\n"
        + checked.stdout[-4000:]
        + checked.stderr[-2000:]
    )


def test_a_stale_help_block_is_found_and_rewritten(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    begin = readme.index("<!-- help:begin load -->")  # an edit inside a help block
    stale_text = readme[:begin] + readme[begin:].replace("--psm-cycle", "--psm-period", 1)
    assert stale_text != readme
    stale = tmp_path / "README.md"
    stale.write_text(stale_text)
    checked = readme_help("--check", "--readme", str(stale))
    assert checked.returncode == 1 and "every --psm-period s" in checked.stdout, checked.stdout
    assert readme_help("--readme", str(stale)).returncode == 0
    assert readme_help("--check", "--readme", str(stale)).returncode == 0
    assert "--psm-period" not in stale.read_text()
