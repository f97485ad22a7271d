"""The CLI for the product model (issue 16): `gatehouse product create` fills in EnOS's
mandatory fields for its user and takes a catalogue category, and `gatehouse product
categories` lists the catalogue."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import unique
from tests.server import Api, Gatehouse


def cli(gatehouse: Gatehouse, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "GATEHOUSE_URL": gatehouse.url,
        "GATEHOUSE_ORG_ID": gatehouse.org_id,
        "GATEHOUSE_ACCESS_KEY": gatehouse.access_key,
        "GATEHOUSE_ACCESS_SECRET": gatehouse.access_secret,
    }
    return subprocess.run(
        [sys.executable, "-m", "broker.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_product_categories_lists_the_catalogue(gatehouse: Gatehouse) -> None:
    done = cli(gatehouse, "product", "categories")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split()[:3] == ["CATEGORY", "KIND", "TYPE"]
    listed = {line.split()[0] for line in lines[1:]}
    assert {"self-defined", "th-sensor", "smart-plug", "gateway"} <= listed


def test_product_create_fills_the_mandatory_fields_and_takes_a_category(
    gatehouse: Gatehouse, api: Api
) -> None:
    done = cli(gatehouse, "product", "create", "--name", unique("plug"), "--category", "smart-plug")
    assert done.returncode == 0, done.stderr
    created = api("products", "get", productKey=done.stdout.strip()).ok()
    assert created["category"] == "smart-plug" and created["modelId"]
    assert (created["productType"], created["dataFormat"], created["biDirectionalAuth"]) == (
        "Device",
        "Json",
        False,
    )
    missing = cli(gatehouse, "product", "create", "--name", unique("p"))
    assert missing.returncode != 0 and "--model" in missing.stderr
