"""`gatehouse model`: manage thing models through the API."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from broker.cli.common import api_parser, json_arg, print_json, table
from broker.client import ApiClient, ApiError


def cmd_model_import(api: ApiClient, args: argparse.Namespace) -> int:
    data = json_arg("@" + str(args.file))
    if not isinstance(data, dict):
        raise ApiError(0, 0, f"{args.file} must hold a JSON object")
    # Either {"modelId", "name", "tsl"} or a bare TSL document (then --model-id is needed).
    body = dict(data) if "tsl" in data else {"tsl": data}
    if args.model_id:
        body["modelId"] = args.model_id
    if args.name:
        body["name"] = args.name
    if "modelId" not in body:
        raise ApiError(0, 0, f"{args.file} has no modelId; give --model-id")
    print(api.call("thing-models", "create", body))
    return 0


def cmd_model_list(api: ApiClient, args: argparse.Namespace) -> int:
    models = api.call("thing-models", "list", pageSize=1000)
    tsl = [m["tsl"] for m in models]
    rows = [
        (m["modelId"], m["name"], len(t.get("properties", [])), len(t.get("services", [])))
        for m, t in zip(models, tsl, strict=True)
    ]
    table(rows, ("MODEL ID", "NAME", "PROPERTIES", "SERVICES"))
    return 0


def cmd_model_show(api: ApiClient, args: argparse.Namespace) -> int:
    print_json(api.call("thing-models", "get", modelId=args.model_id))
    return 0


def register(commands: Any) -> None:
    model = commands.add_parser("model", help="manage thing models").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    imported = api_parser(model, "import", "import a thing model from a file", cmd_model_import)
    imported.add_argument("file", type=Path, metavar="FILE")
    imported.add_argument("--model-id")
    imported.add_argument("--name")
    api_parser(model, "list", "list thing models", cmd_model_list)
    show = api_parser(model, "show", "show a thing model", cmd_model_show)
    show.add_argument("model_id", metavar="MODEL_ID")
