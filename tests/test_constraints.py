"""constraints.txt pins every package the project installs, so that CI on a clean clone
runs the checks with what they were last run with: each dependency pyproject.toml names
(the test extras too) is there at one version, agreeing with any pin pyproject makes."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and version, f"constraints.txt: {line!r} is not NAME==VERSION"
            pins[canonicalize_name(name)] = version
    return pins


def _requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    named = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        named += extra
    return [Requirement(text) for text in named]


def test_every_dependency_is_pinned_at_a_version_it_allows() -> None:
    pins = _pins()
    problems = []
    for requirement in _requirements():
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue  # not for this platform
        version = pins.get(canonicalize_name(requirement.name))
        if version is None:
            problems.append(f"{requirement.name}: not in constraints.txt")
        elif not requirement.specifier.contains(version, prereleases=True):
            problems.append(f"{requirement.name}: {version} is outside {requirement.specifier}")
    assert problems == []
