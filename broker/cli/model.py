"""`gatehouse model`: manage thing models through the API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from broker.cli.common import CONTEXT, Failure, json_value, print_json, table, with_api


@click.group(context_settings=CONTEXT, help="Manage thing models.")
def model() -> None:
    pass


@model.command(
    "import",
    help='Import a thing model from FILE: {"modelId", "name", "tsl"}, or a bare TSL'
    " document with --model-id.",
)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--model-id", help="the modelId (default: the file's)")
@click.option("--name", help="the model's name (default: the file's)")
@with_api
def import_model(api: Any, file: Path, model_id: str | None, name: str | None) -> None:
    data = json_value(f"@{file}")
    if not isinstance(data, dict):
        raise Failure(f"{file} must hold a JSON object")
    body = dict(data) if "tsl" in data else {"tsl": data}
    if model_id:
        body["modelId"] = model_id
    if name:
        body["name"] = name
    if "modelId" not in body:
        raise Failure(f"{file} has no modelId; give --model-id")
    click.echo(api.call("thing-models", "create", body))


@model.command("list", help="List thing models.")
@with_api
def list_models(api: Any) -> None:
    models = api.call("thing-models", "list", pageSize=1000)
    rows = [
        (
            m["modelId"],
            m["name"],
            len(m["tsl"].get("properties", [])),
            len(m["tsl"].get("services", [])),
        )
        for m in models
    ]
    table(rows, ("MODEL ID", "NAME", "PROPERTIES", "SERVICES"))


@model.command(help="Show a thing model.")
@click.argument("model_id")
@with_api
def show(api: Any, model_id: str) -> None:
    print_json(api.call("thing-models", "get", modelId=model_id))
