"""The typed OpenAPI document of the connection service, built from the actions each
resource answers.

EnOS's URL shape is one `POST /connect-service/v2.1/{resource}?action={verb}` per
resource, and OpenAPI keys an operation by path and method only, so each resource is
one operation: `action` is an enum of its verbs, the query parameters are those of all
its actions (each saying which actions need it), the body is `anyOf` the actions'
bodies and the 200 answer the envelope with `data` `anyOf` the actions' data. Every
action's own models are components named `{Resource}{Action}Body` and
`{Resource}{Action}Data`, and the operation's `x-actions` maps each verb to them and
to its parameters, for client generators that read extensions. Errors are the
envelope with `data: null`, under the statuses the API answers (400, never 422).
Actions this table does not describe yet are listed with an object body and any data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from registry import DeviceCreate, ProductCreate, ThingModelCreate

Schema = dict[str, Any]

ANY: Schema = {}
NULL: Schema = {"type": "null"}
STRING: Schema = {"type": "string"}
OBJECT: Schema = {"type": "object"}
INTEGER: Schema = {"type": "integer"}


def array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


# -- the views the actions answer (loose: the fields named are typed, others allowed) ----


class View(BaseModel):
    model_config = ConfigDict(extra="allow")


class DeviceCredentials(View):
    productKey: str
    deviceKey: str
    deviceSecret: str
    assetId: str


class DeviceView(View):
    productKey: str
    deviceKey: str
    assetId: str
    deviceName: dict[str, Any]
    timezone: str
    state: str = Field(description="inactive, online, offline or disabled")
    enabled: bool
    online: bool
    activatedAt: int | None
    lastSeenAt: int | None
    createdAt: int


class ProductView(View):
    productKey: str
    productSecret: str
    orgId: str
    createdAt: int


class ThingModelView(View):
    modelId: str
    name: str
    desc: str
    tsl: dict[str, Any]
    createdAt: int


class CommandView(View):
    commandId: str
    productKey: str
    deviceKey: str
    kind: str
    state: str
    createdAt: int


class CertificateView(View):
    certSN: str
    productKey: str
    deviceKey: str
    cert: str
    notBefore: int
    notAfter: int
    revoked: bool


class LogEntry(View):
    cursor: int = Field(description="where this entry is in the log: pass as since")
    productKey: str
    deviceKey: str
    time: int
    kind: str = Field(description="up, online, offline or refused")


class SubscriptionView(View):
    subId: str
    productKeys: list[str]
    kinds: list[str]
    accessKey: str
    createdAt: int


class WebhookView(View):
    webhookId: str
    url: str
    productKeys: list[str]
    kinds: list[str]
    createdAt: int


class Pagination(BaseModel):
    pageNo: int
    pageSize: int
    totalSize: int


class Envelope(BaseModel):
    """Every answer: `code` 0 and `msg` "OK" on success, else what went wrong."""

    code: int
    msg: str
    requestId: str
    data: Any = None
    pagination: Pagination | None = None
    nextCursor: int | None = Field(default=None, description="messages: where to poll next")


class ErrorEnvelope(BaseModel):
    code: int = Field(description="non-zero: 99400 invalid, 99401 auth, 99404 not found, ...")
    msg: str
    requestId: str
    data: None = None


MODELS: tuple[type[BaseModel], ...] = (
    DeviceCredentials,
    DeviceView,
    ProductView,
    ThingModelView,
    CommandView,
    CertificateView,
    LogEntry,
    SubscriptionView,
    WebhookView,
    Pagination,
    Envelope,
    ErrorEnvelope,
    DeviceCreate,
    ProductCreate,
    ThingModelCreate,
)


# -- the actions -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    description: str
    schema: Schema | None = None


@dataclass(frozen=True, slots=True)
class Action:
    summary: str
    query: tuple[str, ...] = ()  # names in PARAMS
    body: Schema | None = None
    data: Schema | None = None  # None: the action answers `data: null`


PARAMS: dict[str, Param] = {
    p.name: p
    for p in (
        Param("productKey", "the product"),
        Param("deviceKey", "the device, with productKey"),
        Param("assetId", "the device, instead of productKey and deviceKey"),
        Param("modelId", "the thing model"),
        Param("commandId", "the command"),
        Param("serviceId", "the service to invoke"),
        Param("timeout", "seconds to wait for the device's reply", {"type": "string"}),
        Param("pendingTtl", "seconds a command may wait for an offline device"),
        Param("pageNo", "page number, from 1", {"type": "string", "pattern": "^[0-9]+$"}),
        Param("pageSize", "page size, 1 to 1000", {"type": "string", "pattern": "^[0-9]+$"}),
        Param("kind", "kinds, comma-separated (up, online, offline, refused)"),
        Param("kinds", "kinds, comma-separated"),
        Param("since", "a cursor: only what came after it, oldest first"),
        Param("limit", "at most this many, 1 to 1000"),
        Param("subId", "the data subscription"),
        Param("webhookId", "the webhook"),
        Param("categoryId", "the product category"),
        Param("projectId", "the project"),
    )
}

DEVICE = ("productKey", "deviceKey", "assetId")
PAGE = ("pageNo", "pageSize")
SUB_DEVICES: Schema = {
    "type": "object",
    "properties": {"subDevices": array(OBJECT)},
    "required": ["subDevices"],
}


def _actions() -> dict[str, dict[str, Action]]:
    device = ref("DeviceView")
    product = ref("ProductView")
    model = ref("ThingModelView")
    command = ref("CommandView")
    certificate = ref("CertificateView")
    return {
        "products": {
            "create": Action(
                "create a product; data: its ProductKey", (), ref("ProductCreate"), STRING
            ),
            "get": Action("one product", ("productKey",), None, product),
            "list": Action(
                "the products, newest first", (*PAGE, "projectId"), None, array(product)
            ),
            "update": Action("change a product's settings", ("productKey",), OBJECT, product),
            "delete": Action("delete a product without devices", ("productKey",)),
            "release": Action("release a product", ("productKey",), None, product),
        },
        "devices": {
            "create": Action(
                "register a device", (), ref("DeviceCreate"), ref("DeviceCredentials")
            ),
            "batchCreate": Action(
                "register up to 10,000 devices",
                (),
                {"type": "object", "properties": {"deviceList": array(ref("DeviceCreate"))}},
                array(ref("DeviceCredentials")),
            ),
            "get": Action("one device", DEVICE, None, device),
            "list": Action("a product's devices", ("productKey", *PAGE), None, array(device)),
            "exportCredentials": Action(
                "every device's credentials",
                ("productKey", *PAGE),
                None,
                array(ref("DeviceCredentials")),
            ),
            "update": Action("change a device", DEVICE, OBJECT, device),
            "enable": Action("enable a device", DEVICE, None, device),
            "disable": Action("disable a device (it is logged out)", DEVICE, None, device),
            "delete": Action("delete a device", DEVICE),
            "getLatest": Action("each measurepoint's newest value and time", DEVICE, None, OBJECT),
            "listMessages": Action(
                "the device's log, newest first or after a cursor",
                (*DEVICE, "kind", "kinds", "since", "limit"),
                None,
                array(ref("LogEntry")),
            ),
            "getConnectBlock": Action(
                "what keeps the device from connecting", DEVICE, None, OBJECT
            ),
            "clearConnectBlock": Action("lift the device's connect blocks", DEVICE, None, OBJECT),
            "publish": Action(
                "send bytes to one of the device's custom topics (Alibaba's Pub)",
                DEVICE,
                {
                    "type": "object",
                    "required": ["topic", "payloadBase64"],
                    "properties": {
                        "topic": {"type": "string", "maxLength": 1024},
                        "payloadBase64": {"type": "string"},
                        "qos": {"type": "integer", "enum": [0, 1]},
                    },
                },
                OBJECT,
            ),
        },
        "messages": {
            "list": Action(
                "a product's log, newest first or after a cursor",
                ("productKey", "deviceKey", "kinds", "kind", "since", "limit"),
                None,
                array(ref("LogEntry")),
            ),
        },
        "thing-models": {
            "create": Action(
                "create a thing model; data: its id", (), ref("ThingModelCreate"), STRING
            ),
            "update": Action("replace a thing model", (), ref("ThingModelCreate"), model),
            "get": Action("one thing model", ("modelId",), None, model),
            "list": Action("the thing models", (), None, array(model)),
            "delete": Action("delete an unused thing model", ("modelId",)),
        },
        "statistics": {
            "get": Action("one product's device counts", ("productKey",), None, OBJECT),
            "list": Action("every product's device counts", PAGE, None, array(OBJECT)),
        },
        "organizations": {
            "create": Action("a new organisation (admin only)", (), OBJECT, OBJECT),
            "get": Action("your organisation", (), None, OBJECT),
        },
        "commands": {
            "invokeService": Action(
                "invoke a service", (*DEVICE, "serviceId", "timeout", "pendingTtl"), OBJECT, command
            ),
            "setMeasurepoint": Action(
                "set measurepoints", (*DEVICE, "timeout", "pendingTtl"), OBJECT, command
            ),
            "sendRaw": Action(
                "send raw bytes", (*DEVICE, "timeout", "pendingTtl"), OBJECT, command
            ),
            "get": Action("one command", ("commandId",), None, command),
            "list": Action("a device's commands", DEVICE, None, array(command)),
            "cancel": Action("cancel a waiting command", ("commandId",), None, command),
        },
        "device-certificates": {
            "apply": Action("issue a certificate from a CSR", DEVICE, OBJECT, certificate),
            "renew": Action("renew a certificate", DEVICE, OBJECT, certificate),
            "revoke": Action("revoke a certificate", DEVICE, OBJECT),
            "list": Action("a device's certificates", DEVICE, None, array(certificate)),
            "getCaCert": Action("the CA certificate", (), None, OBJECT),
        },
        "device-topos": {
            "addSubDevice": Action(
                "add sub-devices to a gateway", DEVICE, SUB_DEVICES, array(OBJECT)
            ),
            "deleteSubDevice": Action("remove sub-devices", DEVICE, SUB_DEVICES),
            "list": Action("a gateway's sub-devices", DEVICE, None, array(OBJECT)),
            "getGateway": Action(
                "a sub-device's gateway (null: none)", DEVICE, None, {"anyOf": [OBJECT, NULL]}
            ),
        },
        "subscriptions": {
            "create": Action("a data subscription", (), OBJECT, ref("SubscriptionView")),
            "get": Action(
                "one, with its groups' offsets", ("subId",), None, ref("SubscriptionView")
            ),
            "list": Action("the organisation's", (), None, array(ref("SubscriptionView"))),
            "delete": Action("delete one", ("subId",)),
        },
        "webhooks": {
            "create": Action("a webhook", (), OBJECT, ref("WebhookView")),
            "get": Action("one, with its counts", ("webhookId",), None, ref("WebhookView")),
            "list": Action("the organisation's", (), None, array(ref("WebhookView"))),
            "delete": Action("delete one", ("webhookId",)),
            "deliveries": Action("its last attempts", ("webhookId",), None, array(OBJECT)),
        },
        "broker": {
            "stats": Action("the broker's counters (admin only)", (), None, OBJECT),
            "sync": Action("answers once what devices sent before is stored"),
        },
        "categories": {
            "list": Action("the product categories", (), None, array(OBJECT)),
            "get": Action("one category", ("categoryId",), None, OBJECT),
        },
        "projects": {
            "create": Action("a project", (), OBJECT, OBJECT),
            "list": Action("the projects", (), None, array(OBJECT)),
        },
    }


ACTIONS = _actions()
UNDESCRIBED = Action("", (), OBJECT, ANY)
ERROR_STATUSES = {
    "400": "invalid arguments: the message names what to fix",
    "401": "no or wrong access key and secret",
    "403": "not yours to do",
    "404": "no such thing in your organisation",
    "409": "it exists, or is in the way",
    "413": "the body is too large",
    "500": "an internal error (the server log has the details)",
    "503": "the storage is unavailable, or too many streams are open",
}


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.replace("-", " ").split())


def error_responses() -> dict[str, Any]:
    content = {"application/json": {"schema": ref("ErrorEnvelope")}}
    return {
        status: {"description": why, "content": content} for status, why in ERROR_STATUSES.items()
    }


def resource_operation(
    resource: str, verbs: list[str], components: dict[str, Schema]
) -> dict[str, Any]:
    """The one POST operation of a resource, its actions' models added to components."""
    described = ACTIONS.get(resource, {})
    actions = {verb: described.get(verb, UNDESCRIBED) for verb in verbs}
    bodies: list[Schema] = []
    datas: list[Schema] = []
    table: dict[str, Any] = {}
    for verb, action in actions.items():
        base = f"{_camel(resource)}{_camel(verb)}"
        entry: dict[str, Any] = {"summary": action.summary, "query": list(action.query)}
        if action.body is not None:
            components[f"{base}Body"] = action.body
            bodies.append(ref(f"{base}Body"))
            entry["body"] = ref(f"{base}Body")
        components[f"{base}Data"] = action.data if action.data is not None else NULL
        datas.append(ref(f"{base}Data"))
        entry["data"] = ref(f"{base}Data")
        table[verb] = entry
    names = sorted({q for a in actions.values() for q in a.query})
    parameters: list[dict[str, Any]] = [
        {
            "name": "action",
            "in": "query",
            "required": True,
            "schema": {"type": "string", "enum": verbs},
            "description": "; ".join(f"{v}: {a.summary}" for v, a in actions.items() if a.summary),
        },
        {
            "name": "orgId",
            "in": "query",
            "required": False,
            "schema": STRING,
            "description": "your organisation: when given it must be yours; optional but"
            " on products?action=create, where EnOS makes it mandatory",
        },
    ]
    for name in names:
        param = PARAMS[name]
        users = ", ".join(v for v, a in actions.items() if name in a.query)
        parameters.append(
            {
                "name": name,
                "in": "query",
                "required": False,
                "schema": param.schema or STRING,
                "description": f"{param.description} (actions: {users})",
            }
        )
    success = {
        "allOf": [ref("Envelope")],
        "properties": {"data": {"anyOf": datas}},
    }
    operation: dict[str, Any] = {
        "summary": f"{resource}: {', '.join(verbs)}",
        "operationId": f"{resource.replace('-', '_')}_actions",
        "tags": [resource],
        "parameters": parameters,
        "responses": {
            "200": {"description": "done", "content": {"application/json": {"schema": success}}},
            **error_responses(),
        },
        "x-actions": table,
    }
    if bodies:
        operation["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": {"anyOf": bodies}}},
        }
    return operation


def model_components() -> dict[str, Schema]:
    """The models as components, their nested definitions beside them (no dangling refs)."""
    found: dict[str, Schema] = {}
    for model in MODELS:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        found.update(schema.pop("$defs", {}))
        found[model.__name__] = schema
    return found


def openapi_paths(
    prefix: str, resources: Mapping[str, Mapping[str, Any]]
) -> tuple[dict[str, Any], dict[str, Schema]]:
    components = model_components()
    paths = {
        f"{prefix}/{name}": {"post": resource_operation(name, list(verbs), components)}
        for name, verbs in resources.items()
    }
    return paths, components
