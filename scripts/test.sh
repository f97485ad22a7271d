#!/usr/bin/env bash
# Sets up a virtual environment with the test extras, then runs lint, types and the tests.
# This is the README's second command and what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
# The tests run the registry on PostgreSQL too, in a throwaway cluster of their own
# (tests/conftest.py): install Debian's server when it is missing (CI runs as root).
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "scripts/test.sh: PostgreSQL is missing; as root: apt-get install -y postgresql" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
# The console's end-to-end tests (tests/test_console.py) drive Debian's chromium through
# Playwright (whose own browser download cannot work here): install it the same way.
if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "scripts/test.sh: chromium is missing; as root: apt-get install -y chromium" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
# At the versions tested (constraints.txt), so that a release elsewhere cannot change a
# check's outcome.
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
