"""The registry's rules: every operation on organisations, models, products, devices,
bindings and topology, scoped to the organisation that asks.

Inputs arrive as plain dicts (API bodies, provisioning files) and are validated here
with the models in `registry.models`, so every face gets the same checks and messages.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from certs import CertificateAuthority, CertificateError, Issued
from registry import ids
from registry.activation import (
    ACCESS_KEY_LIMIT,
    AccessKey,
    AccessKeyCreate,
    ActivationCode,
    CodePurchase,
    CodeTotals,
)
from registry.catalogue import category
from registry.errors import (
    Conflict,
    DeviceKeyExists,
    DeviceLimitExceeded,
    Forbidden,
    InvalidArgument,
    ModelNotFound,
    NotFound,
    Unauthorized,
)
from registry.models import (
    Binding,
    Certificate,
    Device,
    DeviceCreate,
    DeviceUpdate,
    Organization,
    Product,
    ProductCreate,
    ProductImage,
    ProductSettings,
    ProductStats,
    Project,
    ThingModel,
    ThingModelCreate,
    Topology,
)
from registry.observers import RegistryObserver
from registry.product_search import compile_expression
from registry.scripts import ProductScript, script_upload, version_of
from registry.store import CommandStore, Duplicate, Store, TelemetryStore
from registry.tsl import CompiledModel, compile_model

M = TypeVar("M", bound=BaseModel)
USER_ID = re.compile(r"[A-Za-z0-9_.@\-]{1,64}")  # matched whole (fullmatch)
MAX_BATCH = 50_000
SEARCH_BATCH = 1000  # products read at a time by search_products
MAX_FREE_CODES = 100_000  # activation codes not yet taken, per product (held in memory)
DEFAULT_PROJECT = "default"  # every organisation's first project (migration 7 for old ones)
PROJECT_ID = re.compile(r"[A-Za-z0-9_\-]{1,32}")
MAX_IMAGE_BYTES = 1024 * 1024  # a product image: PNG or JPEG up to 1 MiB
IMAGE_TYPES = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg"}
# What a released product may still change: the rest is frozen with its thing model.
EDITABLE_WHEN_RELEASED = frozenset(
    {"productName", "productDesc", "productTags", "bindingMode", "sharingEnabled"}
)


def validate(model: type[M], data: Any, what: str) -> M:
    """Validate with pydantic and turn its errors into one readable InvalidArgument."""
    if not isinstance(data, Mapping):
        raise InvalidArgument(f"{what} must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidArgument(describe_errors(exc, what)) from None


def describe_errors(exc: ValidationError, what: str) -> str:
    """`what.field: message` for each of the first few errors."""
    parts = []
    for error in exc.errors()[:5]:
        location = ".".join([what, *(str(p) for p in error["loc"])])
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "not a known field"
        parts.append(f"{location}: {message}")
    return "; ".join(parts)


# What the broker records per device: its uplinks, and its connection events.
LOG_KINDS = ("up", "online", "offline", "refused")
MAX_CURSOR = 2**63 - 1  # a log seq: both stores' 64-bit integers


def _log_entry(
    product_key: str,
    device_key: str,
    ts: int,
    kind: str,
    topic: str,
    payload: bytes | None,
    code: int | None,
    detail: str,
) -> dict[str, Any]:
    entry: dict[str, Any] = {"time": ts, "kind": kind}
    if topic:
        entry["topic"] = topic
    if payload is not None:
        try:
            entry["payload"] = payload.decode()
        except UnicodeDecodeError:
            entry["payloadHex"] = payload.hex()
    if code is not None:
        entry["code"] = code
    if detail:
        entry["detail"] = detail
    return entry


@dataclass(frozen=True, slots=True)
class Attachment:
    topology: Topology
    moved_from: Topology | None  # the gateway a sub-device left by switching, if any


@dataclass(frozen=True, slots=True)
class Page:
    number: int = 1
    size: int = 100

    @classmethod
    def of(cls, number: Any, size: Any) -> Page:
        try:
            page = cls(int(number or 1), int(size or 100))
        except (TypeError, ValueError):
            raise InvalidArgument("pageNo and pageSize must be whole numbers") from None
        if page.number < 1 or not 1 <= page.size <= 1000:
            raise InvalidArgument("pageNo must be 1 or more, and pageSize 1 to 1000")
        return page

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.size


class Registry:
    def __init__(
        self,
        store: Store,
        *,
        max_devices_per_product: int = 10_000,
        ca: CertificateAuthority | None = None,
    ) -> None:
        self.store = store
        self.max_devices_per_product = max_devices_per_product
        self._compiled: dict[tuple[str, str], CompiledModel] = {}
        self.observers: list[RegistryObserver] = []
        self.ca = ca  # device certificates are issued by it; None: certificates are refused
        # Told of each product script saved (or, with None, deleted), after it is written.
        self.script_listeners: list[Callable[[str, ProductScript | None], None]] = []
        self._orgs_by_key: dict[str, Organization] = {}  # see authenticate

    # ------------------------------------------------------------------ what the broker reads

    @property
    def telemetry(self) -> TelemetryStore:
        """Where the broker writes device data behind (presence, the log, latest values)."""
        return self.store

    @property
    def command_log(self) -> CommandStore:
        """Where commands to devices are kept from acceptance to their end."""
        return self.store

    async def admin_org(self) -> Organization | None:
        return await self.store.admin_org()

    async def all_orgs(self) -> list[Organization]:
        return await self.store.all_orgs()

    async def all_products(self) -> list[Product]:
        return await self.store.all_products()

    async def all_devices(self) -> list[Device]:
        return await self.store.all_devices()

    async def all_topology(self) -> list[Topology]:
        return await self.store.all_topology()

    async def revoked_serials(self) -> list[str]:
        return await self.store.revoked_serials()

    async def live_certificates(self) -> list[tuple[str, str, str]]:
        """(serial, ProductKey, DeviceKey) of every certificate not revoked."""
        return await self.store.live_certificates()

    async def all_product_scripts(self) -> list[ProductScript]:
        return await self.store.all_product_scripts()

    async def find_model(self, org_id: str, model_id: str) -> ThingModel | None:
        return await self.store.get_model(org_id, model_id)

    async def find_product(self, product_key: str) -> Product | None:
        """The product of any organisation, or None (for rules across organisations)."""
        return await self.store.get_product(product_key)

    async def product_named(self, org_id: str, name: str) -> str | None:
        return await self.store.product_named(org_id, name)

    async def find_device(self, product_key: str, device_key: str) -> Device | None:
        return await self.store.get_device(product_key, device_key)

    async def stats_of(self, products: Sequence[Product]) -> list[ProductStats]:
        return [await self.store.product_stats(p.productKey) for p in products]

    async def sub_device_records(self, gateway_pk: str, gateway_dk: str) -> list[Device]:
        """The devices under a gateway, oldest attachment first."""
        return await self.store.list_sub_devices(gateway_pk, gateway_dk)

    # ------------------------------------------------------------------ organizations

    async def create_org(
        self,
        name: str,
        *,
        org_id: str | None = None,
        access_key: str | None = None,
        access_secret: str | None = None,
        admin: bool = False,
    ) -> tuple[Organization, str]:
        """Create an organisation; returns it and its access secret (shown only now)."""
        secret = access_secret or ids.access_secret()
        org = Organization(
            orgId=org_id or ids.org_id(),
            name=name,
            accessKey=access_key or ids.access_key(),
            secretHash=ids.hash_secret(secret),
            admin=admin,
            createdAt=ids.now_ms(),
        )
        try:
            await self.store.insert_org(org)
        except Duplicate:
            raise Conflict("an organisation with that id or access key exists") from None
        await self.store.insert_project(
            Project(
                orgId=org.orgId,
                projectId=DEFAULT_PROJECT,
                name="Default project",
                createdAt=org.createdAt,
            )
        )
        for observer in self.observers:
            observer.org_saved(org)
        return org, secret

    async def authenticate(self, access_key: str, access_secret: str) -> Organization:
        """The organisation whose key and secret these are. Every API call asks, so the
        organisations found are kept (they never change, and there are few: a key that
        exists in no organisation is asked of the store each time, and not kept)."""
        org = self._orgs_by_key.get(access_key)
        if org is None:
            org = await self.store.get_org_by_access_key(access_key)
            if org is None:
                org = await self._extra_key(access_key)  # kept too; deleting one forgets it
            if org is not None:
                self._orgs_by_key[access_key] = org
        if org is None or not ids.secret_matches(access_secret, org.secretHash):
            raise Unauthorized("wrong access key or secret")
        return org

    async def _extra_key(self, access_key: str) -> Organization | None:
        """The organisation of an extra access key, as that key sees it (its permission)."""
        key = await self.store.get_access_key(access_key)
        owner = await self.store.get_org(key.orgId) if key is not None else None
        if key is None or owner is None:
            return None
        return owner.model_copy(update={"secretHash": key.secretHash, "permission": key.permission})

    async def create_access_key(self, org_id: str, body: Any) -> tuple[AccessKey, str]:
        """An extra access key, full access or read only; its secret is shown only now."""
        spec = validate(AccessKeyCreate, body if body is not None else {}, "access key")
        if len(await self.store.list_access_keys(org_id)) >= ACCESS_KEY_LIMIT:
            raise Conflict(f"an organisation has at most {ACCESS_KEY_LIMIT} extra access keys")
        secret = ids.access_secret()
        key = AccessKey(
            accessKey=ids.access_key(),
            orgId=org_id,
            secretHash=ids.hash_secret(secret),
            permission=spec.permission,
            description=spec.description,
            createdAt=ids.now_ms(),
        )
        try:
            await self.store.insert_access_key(key)
        except Duplicate:
            raise Conflict("that access key exists") from None
        return key, secret

    async def list_access_keys(self, org_id: str) -> list[AccessKey]:
        return await self.store.list_access_keys(org_id)

    async def delete_access_key(self, org_id: str, access_key: str) -> None:
        if not await self.store.delete_access_key(org_id, access_key):
            raise NotFound(f"access key {access_key!r} does not exist")
        self._orgs_by_key.pop(access_key, None)

    async def has_orgs(self) -> bool:
        return await self.store.count_orgs() > 0

    # ------------------------------------------------------------------ thing models

    async def create_model(self, org_id: str, body: Any) -> ThingModel:
        spec = validate(ThingModelCreate, body, "thing model")
        compiled = compile_model(spec.tsl)
        if await self.store.get_model(org_id, spec.modelId) is not None:
            raise Conflict(f"thing model {spec.modelId!r} exists")
        model = ThingModel(
            orgId=org_id,
            modelId=spec.modelId,
            name=spec.name or spec.modelId,
            desc=spec.desc,
            tsl=spec.tsl,
            createdAt=ids.now_ms(),
        )
        await self.store.insert_model(model)
        self._compiled[(org_id, spec.modelId)] = compiled
        return model

    async def update_model(self, org_id: str, body: Any) -> ThingModel:
        spec = validate(ThingModelCreate, body, "thing model")
        compiled = compile_model(spec.tsl)
        old = await self.get_model(org_id, spec.modelId)
        for product_key in await self.store.products_using_model(org_id, spec.modelId):
            user = await self.store.get_product(product_key)
            if user is not None and user.developmentStatus == "released":
                raise Conflict(
                    f"thing model {spec.modelId!r} is used by released product {product_key};"
                    " a released product's thing model is frozen"
                )
        model = old.model_copy(
            update={"name": spec.name or old.name, "desc": spec.desc, "tsl": spec.tsl}
        )
        await self.store.replace_model(model)
        self._compiled[(org_id, spec.modelId)] = compiled
        return model

    async def get_model(self, org_id: str, model_id: str) -> ThingModel:
        model = await self.store.get_model(org_id, model_id)
        if model is None:
            raise NotFound(f"thing model {model_id!r} does not exist")
        return model

    async def list_models(self, org_id: str, page: Page) -> list[ThingModel]:
        return await self.store.list_models(org_id, page.offset, page.size)

    async def delete_model(self, org_id: str, model_id: str) -> None:
        await self.get_model(org_id, model_id)
        users = await self.store.products_using_model(org_id, model_id)
        if users:
            raise Conflict(
                f"thing model {model_id!r} is used by products {', '.join(users[:10])};"
                " change or delete them first"
            )
        await self.store.delete_model(org_id, model_id)
        self._compiled.pop((org_id, model_id), None)

    async def compiled_model(self, org_id: str, model_id: str) -> CompiledModel:
        """The model compiled once and cached: the router's hot path reads this."""
        key = (org_id, model_id)
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = compile_model((await self.get_model(org_id, model_id)).tsl)
            self._compiled[key] = compiled
        return compiled

    # ------------------------------------------------------------------ products

    async def create_product(self, org_id: str, body: Any) -> Product:
        spec = validate(ProductCreate, body, "product")
        settings = spec.settings()
        project_id = spec.projectId or DEFAULT_PROJECT
        if await self.store.get_project(org_id, project_id) is None:
            raise NotFound(f"project {project_id!r} does not exist")
        await self._category_model(org_id, settings)
        await self._check_settings(org_id, settings, product_key=None)
        product_key = spec.productKey or ids.product_key()
        if spec.productKey and await self.store.get_product(product_key) is not None:
            raise Conflict(f"productKey {product_key!r} is taken")
        product = Product(
            orgId=org_id,
            productKey=product_key,
            productSecret=spec.productSecret or ids.product_secret(),
            settings=settings,
            createdAt=ids.now_ms(),
            projectId=project_id,
        )
        try:
            await self.store.insert_product(product)
        except Duplicate:
            # A race on the name or (once in 10^17) on a generated key.
            raise Conflict("a product with that name or key exists") from None
        self._product_saved(product)
        return product

    async def _check_settings(
        self, org_id: str, settings: ProductSettings, *, product_key: str | None
    ) -> None:
        """The rules that need the database: names, models, named gateways."""
        name = settings.productName.defaultValue
        holder = await self.store.product_named(org_id, name)
        if holder is not None and holder != product_key:
            raise Conflict(f"a product named {name!r} exists ({holder})")
        if await self.store.get_model(org_id, settings.modelId) is None:
            raise ModelNotFound(
                f"modelId {settings.modelId!r} does not exist; create the thing model first"
            )
        for gateway_pk in settings.specifiedGateway.gatewayProductKeys:
            gateway = await self.store.get_product(gateway_pk)
            if gateway is None or gateway.orgId != org_id:
                raise InvalidArgument(f"specifiedGateway: product {gateway_pk!r} does not exist")
            if gateway.settings.deviceType != "gateway":
                raise InvalidArgument(f"specifiedGateway: product {gateway_pk!r} is not a gateway")
        for ref in settings.specifiedGateway.gatewayDevices:
            device = await self.store.get_device(ref.productKey, ref.deviceKey)
            owner = await self.store.get_product(ref.productKey)
            if device is None or owner is None or owner.orgId != org_id:
                raise InvalidArgument(
                    f"specifiedGateway: device {ref.productKey}/{ref.deviceKey} does not exist"
                )
            if owner.settings.deviceType != "gateway":
                raise InvalidArgument(
                    f"specifiedGateway: device {ref.productKey}/{ref.deviceKey} is not a gateway"
                )

    async def _category_model(self, org_id: str, settings: ProductSettings) -> None:
        """A standard-TSL category's thing model, created in the organisation on first use."""
        template = category(settings.category)
        if template.modelId is None or template.tsl is None:
            return
        if await self.store.get_model(org_id, template.modelId) is None:
            with contextlib.suppress(Conflict):  # made meanwhile by another call
                await self.create_model(
                    org_id,
                    {
                        "modelId": template.modelId,
                        "name": template.name,
                        "desc": f"the standard thing model of category {template.categoryId}",
                        "tsl": template.tsl,
                    },
                )

    async def get_product(self, org_id: str, product_key: str) -> Product:
        product = await self.store.get_product(product_key)
        if product is None or product.orgId != org_id:
            raise NotFound(f"product {product_key!r} does not exist")
        return product

    async def list_products(
        self, org_id: str, page: Page, project_id: str | None = None
    ) -> tuple[list[Product], int]:
        """The organisation's products, of one project if named, newest first."""
        if project_id is not None and await self.store.get_project(org_id, project_id) is None:
            raise NotFound(f"project {project_id!r} does not exist")
        products = await self.store.list_products(org_id, page.offset, page.size, project_id)
        return products, await self.store.count_products(org_id, project_id)

    async def search_products(
        self, org_id: str, expression: str, page: Page
    ) -> tuple[list[Product], int]:
        """EnOS's Search Product: the products matching the expression, newest first.
        Products are read in batches and tested here (an organisation has few)."""
        test = compile_expression(expression)
        matched: list[Product] = []
        offset = 0
        while True:
            batch = await self.store.list_products(org_id, offset, SEARCH_BATCH)
            matched.extend(p for p in batch if test(p))
            if len(batch) < SEARCH_BATCH:
                break
            offset += SEARCH_BATCH
        return matched[page.offset : page.offset + page.size], len(matched)

    async def update_product(self, org_id: str, product_key: str, changes: Any) -> Product:
        product = await self.get_product(org_id, product_key)
        if not isinstance(changes, Mapping):
            raise InvalidArgument("product update must be a JSON object")
        for fixed in ("productKey", "productSecret", "projectId", "developmentStatus"):
            if fixed in changes:
                raise InvalidArgument(f"{fixed} cannot change by update")
        if product.developmentStatus == "released":
            frozen = sorted(set(changes) - EDITABLE_WHEN_RELEASED)
            if frozen:
                raise Conflict(
                    f"product {product_key} is released; {', '.join(frozen)} cannot change"
                    f" (only {', '.join(sorted(EDITABLE_WHEN_RELEASED))} and its image can)"
                )
        merged = product.settings.model_dump(mode="json")
        # Settings whose default follows another setting are re-derived when that one changes.
        type_changes = "productType" in changes or "deviceType" in changes
        if "productType" in changes and "deviceType" not in changes:
            merged.pop("deviceType")
        if type_changes and "gatewayAccessMode" not in changes:
            merged.pop("gatewayAccessMode")
        if "networkMethod" in changes and "bindingMode" not in changes:
            merged.pop("bindingMode")
        if "networkMethod" in changes and "connectedPlatform" not in changes:
            merged.pop("connectedPlatform")
        merged.update(changes)
        settings = validate(ProductSettings, merged, "product")
        await self._check_settings(org_id, settings, product_key=product_key)
        old = product.settings
        has_devices = await self.store.count_devices(product_key) > 0
        if settings.deviceType != old.deviceType and has_devices:
            raise Conflict("deviceType cannot change while the product has devices")
        if (
            old.bindingMode == "multi"
            and settings.bindingMode != "multi"
            and await self.store.devices_with_owners(product_key, 2) > 0
        ):
            raise Conflict(
                "bindingMode multi cannot change while a device has two or more bound users;"
                " unbind them first"
            )
        updated = product.model_copy(update={"settings": settings})
        await self.store.replace_product(updated)
        self._product_saved(updated)
        return updated

    def _product_saved(self, product: Product) -> None:
        for observer in self.observers:
            observer.product_saved(product)

    async def release_product(self, org_id: str, product_key: str) -> Product:
        """In development, then released: release freezes what devices rely on."""
        product = await self.get_product(org_id, product_key)
        if product.developmentStatus == "released":
            raise Conflict(f"product {product_key} is released already")
        updated = product.model_copy(
            update={"developmentStatus": "released", "releasedAt": ids.now_ms()}
        )
        await self.store.replace_product(updated)
        self._product_saved(updated)
        return updated

    async def put_product_image(self, org_id: str, product_key: str, content: bytes) -> Product:
        """Store (or replace) the product's image: PNG or JPEG, up to MAX_IMAGE_BYTES."""
        product = await self.get_product(org_id, product_key)
        if not 0 < len(content) <= MAX_IMAGE_BYTES:
            raise InvalidArgument(
                f"a product image is 1 to {MAX_IMAGE_BYTES} bytes, not {len(content)}"
            )
        kind = next((t for magic, t in IMAGE_TYPES.items() if content.startswith(magic)), None)
        if kind is None:
            raise InvalidArgument("a product image must be a PNG or a JPEG")
        image = ProductImage(
            productKey=product_key, contentType=kind, content=content, updatedAt=ids.now_ms()
        )
        await self.store.put_product_image(image)
        return product.model_copy(update={"hasImage": True})

    async def get_product_image(self, org_id: str, product_key: str) -> ProductImage:
        await self.get_product(org_id, product_key)
        image = await self.store.get_product_image(product_key)
        if image is None:
            raise NotFound(f"product {product_key!r} has no image")
        return image

    async def delete_product_image(self, org_id: str, product_key: str) -> None:
        await self.get_product(org_id, product_key)
        if not await self.store.delete_product_image(product_key):
            raise NotFound(f"product {product_key!r} has no image")

    # ------------------------------------------------------------------ projects

    async def create_project(self, org_id: str, body: Any) -> Project:
        if not isinstance(body, Mapping):
            raise InvalidArgument("project must be a JSON object")
        name, project_id = body.get("name"), body.get("projectId") or ids.random_token(8)
        if not isinstance(name, str) or not 1 <= len(name) <= 100:
            raise InvalidArgument("project.name is required: 1 to 100 characters")
        if not isinstance(project_id, str) or not PROJECT_ID.fullmatch(project_id):
            raise InvalidArgument("project.projectId must be 1 to 32 letters, digits, _ or -")
        description = body.get("description", "")
        if not isinstance(description, str) or len(description) > 500:
            raise InvalidArgument("project.description must be text up to 500 characters")
        project = Project(
            orgId=org_id,
            projectId=project_id,
            name=name,
            description=description,
            createdAt=ids.now_ms(),
        )
        try:
            await self.store.insert_project(project)
        except Duplicate:
            raise Conflict("a project with that id or name exists") from None
        return project

    async def list_projects(self, org_id: str) -> list[Project]:
        return await self.store.list_projects(org_id)

    async def delete_product(self, org_id: str, product_key: str) -> None:
        product = await self.get_product(org_id, product_key)
        if product.developmentStatus == "released":
            raise Conflict(f"product {product_key} is released; a released product stays")
        count = await self.store.count_devices(product_key)
        if count:
            raise Conflict(f"product {product_key!r} has {count} devices; delete them first")
        await self.store.delete_product(product_key)
        for observer in self.observers:
            observer.product_deleted(product_key)
        self._script_changed(product_key, None)  # the row went with the product

    async def product_stats(self, org_id: str, product_key: str) -> ProductStats:
        await self.get_product(org_id, product_key)
        return await self.store.product_stats(product_key)

    # ------------------------------------------------------------------ activation codes

    async def purchase_codes(
        self, org_id: str, product_key: str, body: Any
    ) -> list[ActivationCode]:
        """A batch of activation codes for the product, each lasting the period given
        from the moment a device takes it."""
        await self.get_product(org_id, product_key)
        purchase = validate(CodePurchase, body, "activation code purchase")
        now = ids.now_ms()
        totals = await self.store.activation_code_totals(product_key, now)
        if totals.available + purchase.count > MAX_FREE_CODES:
            raise Conflict(
                f"product {product_key} would hold {totals.available + purchase.count} codes"
                f" not yet taken; the limit is {MAX_FREE_CODES}"
            )
        batch = ids.random_token(12)
        codes = [
            ActivationCode(
                code=ids.random_token(20),
                productKey=product_key,
                batchId=batch,
                validSeconds=purchase.valid_seconds,
                purchasedAt=now,
            )
            for _ in range(purchase.count)
        ]
        try:
            await self.store.insert_activation_codes(codes)
        except Duplicate:  # once in 10^35
            raise Conflict("a generated code exists; purchase again") from None
        for observer in self.observers:
            observer.activation_codes_added(codes)
        return codes

    async def code_totals(self, org_id: str, product_key: str) -> CodeTotals:
        await self.get_product(org_id, product_key)
        return await self.store.activation_code_totals(product_key, ids.now_ms())

    async def list_codes(
        self, org_id: str, product_key: str, page: Page
    ) -> tuple[list[ActivationCode], int]:
        """The product's codes in the order devices take them."""
        totals = await self.code_totals(org_id, product_key)
        codes = await self.store.list_activation_codes(product_key, page.offset, page.size)
        return codes, totals.total

    async def all_activation_codes(self) -> list[ActivationCode]:
        return await self.store.all_activation_codes()

    async def consume_activation_code(
        self, code: str, device_key: str, consumed_at: int, expires_at: int
    ) -> bool:
        """Record what the broker decided (broker/gate/activation_codes.py): a device took
        a code."""
        return await self.store.consume_activation_code(code, device_key, consumed_at, expires_at)

    async def deactivate_device(self, product_key: str, device_key: str) -> None:
        """Record what the broker decided: the device's codes ran out, it is inactive."""
        await self.store.deactivate_device(product_key, device_key)

    # ------------------------------------------------------------------ devices

    async def create_devices(self, org_id: str, bodies: Sequence[Any]) -> list[Device]:
        """Create devices, all or nothing; a fault names the entry it is in."""
        if not 1 <= len(bodies) <= MAX_BATCH:
            raise InvalidArgument(f"give 1 to {MAX_BATCH} devices at once, not {len(bodies)}")
        batch = len(bodies) > 1
        specs: list[DeviceCreate] = []
        for index, body in enumerate(bodies):
            where = f"deviceList[{index}]" if batch else "device"
            specs.append(validate(DeviceCreate, body, where))
        products: dict[str, Product] = {}
        for spec in specs:
            if spec.productKey not in products:
                products[spec.productKey] = await self.get_product(org_id, spec.productKey)
        now = ids.now_ms()
        devices = [
            Device(
                orgId=org_id,
                productKey=spec.productKey,
                deviceKey=spec.deviceKey or ids.device_key(),
                deviceSecret=spec.deviceSecret or ids.device_secret(),
                assetId=ids.asset_id(),
                deviceName=spec.deviceName,
                timezone=spec.timezone,
                deviceDesc=spec.deviceDesc,
                deviceAttributes=spec.deviceAttributes,
                deviceTags=spec.deviceTags,
                enabled=True,
                online=False,
                activatedAt=None,
                lastSeenAt=None,
                createdAt=now,
            )
            for spec in specs
        ]
        await self._check_new_keys(devices)
        try:
            await self.store.insert_devices(devices)
        except Duplicate:
            raise DeviceKeyExists("a deviceKey in the request exists already") from None
        self._devices_saved(devices)
        return devices

    def _devices_saved(self, devices: Sequence[Device]) -> None:
        for observer in self.observers:
            observer.devices_saved(devices)

    async def _check_new_keys(self, devices: Sequence[Device]) -> None:
        per_product: dict[str, list[str]] = {}
        for device in devices:
            per_product.setdefault(device.productKey, []).append(device.deviceKey)
        for product_key, keys in per_product.items():
            if len(set(keys)) != len(keys):
                raise DeviceKeyExists(f"a deviceKey appears twice in the request ({product_key})")
            taken = await self.store.existing_device_keys(product_key, keys)
            if taken:
                shown = ", ".join(sorted(taken)[:5])
                raise DeviceKeyExists(f"deviceKey exists in product {product_key}: {shown}")
            count = await self.store.count_devices(product_key)
            if count + len(keys) > self.max_devices_per_product:
                raise DeviceLimitExceeded(
                    f"product {product_key} would have {count + len(keys)} devices;"
                    f" the limit is {self.max_devices_per_product}"
                )

    async def get_device(
        self,
        org_id: str,
        product_key: str | None = None,
        device_key: str | None = None,
        asset_id: str | None = None,
    ) -> Device:
        """Find a device by productKey and deviceKey, or by assetId."""
        if asset_id:
            device = await self.store.get_device_by_asset(asset_id)
            label = f"assetId {asset_id!r}"
        elif product_key and device_key:
            device = await self.store.get_device(product_key, device_key)
            label = f"device {product_key}/{device_key}"
        else:
            raise InvalidArgument("name the device by productKey and deviceKey, or by assetId")
        if device is None or device.orgId != org_id:
            raise NotFound(f"{label} does not exist")
        return device

    async def list_devices(
        self, org_id: str, product_key: str, page: Page
    ) -> tuple[list[Device], int]:
        await self.get_product(org_id, product_key)
        devices = await self.store.list_devices(product_key, page.offset, page.size)
        return devices, await self.store.count_devices(product_key)

    async def update_device(self, device: Device, changes: Any) -> Device:
        update = validate(DeviceUpdate, changes, "device update")
        changed = {
            name: getattr(update, name)
            for name in update.model_fields_set
            if getattr(update, name) is not None
        }
        updated = device.model_copy(update=changed)
        await self.store.replace_device(updated)
        self._devices_saved([updated])
        return updated

    async def set_enabled(self, device: Device, enabled: bool) -> Device:
        updated = device.model_copy(update={"enabled": enabled})
        await self.store.replace_device(updated)
        self._devices_saved([updated])
        return updated

    async def delete_device(self, device: Device) -> None:
        # Its certificates are revoked with it (and the cache forgets them in device_deleted).
        await self.store.delete_device(device.productKey, device.deviceKey, ids.now_ms())
        for observer in self.observers:
            observer.device_deleted(device.productKey, device.deviceKey)

    # ------------------------------------------------------------------ device data

    async def latest_values(self, device: Device) -> dict[str, dict[str, Any]]:
        """The newest value of each measurepoint the device has posted, with its time."""
        rows = await self.store.latest_values(device.productKey, device.deviceKey)
        return {name: {"value": orjson.loads(value), "time": ts} for _, _, name, value, ts in rows}

    async def device_log(
        self, device: Device, kinds: Sequence[str] | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """The device's newest messages and connection events, newest first."""
        wanted = list(kinds) if kinds else list(LOG_KINDS)
        unknown = [k for k in wanted if k not in LOG_KINDS]
        if unknown:
            raise InvalidArgument(f"kind {unknown[0]!r} is not one of {', '.join(LOG_KINDS)}")
        if not 1 <= limit <= 1000:
            raise InvalidArgument("limit must be 1 to 1000")
        rows = await self.store.device_log(device.productKey, device.deviceKey, wanted, limit)
        return [_log_entry(*row) for row in rows]

    async def log_page(
        self,
        product_key: str,
        device_key: str | None,
        kinds: Sequence[str] | None = None,
        since: int | None = None,
        limit: int = 100,
    ) -> tuple[list[dict[str, Any]], int]:
        """A product's (or one device's) messages and connection events, each with its
        `cursor`, and the cursor to poll from next: after `since` oldest first, without
        it newest first. Polling with each answer's cursor misses and repeats nothing
        (while the bounded log still holds it)."""
        wanted = list(kinds) if kinds else list(LOG_KINDS)
        unknown = [k for k in wanted if k not in LOG_KINDS]
        if unknown:
            raise InvalidArgument(f"kind {unknown[0]!r:.40} is not one of {', '.join(LOG_KINDS)}")
        if not 1 <= limit <= 1000:
            raise InvalidArgument("limit must be 1 to 1000")
        if since is not None and not 0 <= since <= MAX_CURSOR:
            raise InvalidArgument(f"since must be a cursor of 0 to {MAX_CURSOR}")
        rows = await self.store.log_page(product_key, device_key, wanted, since, limit)
        entries = [
            {"cursor": seq, "productKey": row[0], "deviceKey": row[1], **_log_entry(*row)}
            for seq, row in rows
        ]
        if since is not None:
            return entries, rows[-1][0] if rows else since
        return entries, rows[0][0] if rows else 0

    # ------------------------------------------------------------------ certificates

    async def apply_certificate(self, device: Device, body: Any) -> Certificate:
        """Issue a device certificate from a CSR: `{"csr": PEM, "validDay": N}`."""
        if not isinstance(body, Mapping) or not isinstance(body.get("csr"), str):
            raise InvalidArgument("body field csr is required (a PEM certificate signing request)")
        days = await self._valid_days(device, body.get("validDay"))
        try:
            issued = self._authority().issue(body["csr"], device.productKey, device.deviceKey, days)
        except CertificateError as exc:
            raise InvalidArgument(f"body field csr: {exc}") from None
        return await self._store_certificate(device, issued)

    async def renew_certificate(self, device: Device, body: Any) -> Certificate:
        """A new certificate for the key of one already issued: `{"certSN", "validDay"}`."""
        serial = body.get("certSN") if isinstance(body, Mapping) else None
        old = next((c for c in await self.list_certificates(device) if c.certSN == serial), None)
        if old is None:
            raise NotFound(f"certificate {serial!r} does not exist for this device")
        if old.revokedAt is not None:
            raise Conflict(f"certificate {serial} is revoked; apply for a new one")
        days = await self._valid_days(device, body.get("validDay"))
        try:
            issued = self._authority().renew(old.certPem, device.productKey, device.deviceKey, days)
        except CertificateError as exc:  # a key certified before the rules tightened
            raise InvalidArgument(f"certificate {serial}: {exc}; apply with a new key") from None
        return await self._store_certificate(device, issued)

    async def revoke_certificate(self, device: Device, serial: Any) -> None:
        known = {c.certSN for c in await self.list_certificates(device)}
        if not isinstance(serial, str) or serial not in known:
            raise NotFound(f"certificate {serial!r} does not exist for this device")
        if not await self.store.revoke_certificate(serial, ids.now_ms()):
            raise Conflict(f"certificate {serial} is revoked already")
        for observer in self.observers:
            observer.certificate_revoked(serial)

    async def list_certificates(self, device: Device) -> list[Certificate]:
        """This device's certificates: none of an earlier device of the same key."""
        return await self.store.list_certificates(
            device.productKey, device.deviceKey, device.createdAt
        )

    def _authority(self) -> CertificateAuthority:
        if self.ca is None:
            raise Conflict("this gatehouse has no certificate authority")
        return self.ca

    async def _valid_days(self, device: Device, given: Any) -> int:
        settings = (await self.get_product(device.orgId, device.productKey)).settings
        if not settings.biDirectionalAuth:
            raise Forbidden(
                f"product {device.productKey} does not use two-way TLS (biDirectionalAuth),"
                " so its devices get no certificates"
            )
        days = settings.defaultValidDay if given is None else given
        if (
            isinstance(days, bool)
            or not isinstance(days, int)
            or not 1 <= days <= settings.maxValidDay
        ):
            raise InvalidArgument(
                f"validDay must be a whole number from 1 to the product's maxValidDay"
                f" ({settings.maxValidDay}), not {days!r}"
            )
        return days

    async def _store_certificate(self, device: Device, issued: Issued) -> Certificate:
        cert = Certificate(
            certSN=issued.serial,
            orgId=device.orgId,
            productKey=device.productKey,
            deviceKey=device.deviceKey,
            certPem=issued.cert_pem,
            notBefore=issued.not_before,
            notAfter=issued.not_after,
            createdAt=ids.now_ms(),
        )
        await self.store.insert_certificate(cert)
        for observer in self.observers:
            observer.certificate_issued(cert)
        return cert

    # ------------------------------------------------------------------ bindings

    async def bind(self, device: Device, user_id: str) -> Binding:
        product = await self._binding_product(device, user_id)
        bindings = await self.store.list_bindings(device.productKey, device.deviceKey)
        if any(b.userId == user_id for b in bindings):
            raise Conflict(f"user {user_id!r} is bound to this device already")
        owners = [b.userId for b in bindings if b.role == "owner"]
        mode = product.settings.bindingMode
        if mode == "single" and owners:
            raise Conflict(
                "the product's bindingMode is single and the device is bound to another user;"
                " that user must unbind first"
            )
        binding = Binding(
            productKey=device.productKey,
            deviceKey=device.deviceKey,
            userId=user_id,
            role="owner",
            createdAt=ids.now_ms(),
        )
        # alternate: the newcomer replaces whoever was bound (and whom they shared with).
        replaced = owners if mode == "alternate" else []
        await self.store.replace_bindings(device.productKey, device.deviceKey, replaced, binding)
        return binding

    async def share(self, device: Device, owner_id: str, user_id: str) -> Binding:
        product = await self._binding_product(device, user_id)
        if not product.settings.sharingEnabled:
            raise Forbidden("device sharing is off for this product")
        bindings = await self.store.list_bindings(device.productKey, device.deviceKey)
        if not any(b.userId == owner_id and b.role == "owner" for b in bindings):
            raise Forbidden(f"user {owner_id!r} is not bound to this device as an owner")
        if any(b.userId == user_id for b in bindings):
            raise Conflict(f"user {user_id!r} has this device already")
        binding = Binding(
            productKey=device.productKey,
            deviceKey=device.deviceKey,
            userId=user_id,
            role="shared",
            sharedBy=owner_id,
            createdAt=ids.now_ms(),
        )
        await self.store.replace_bindings(device.productKey, device.deviceKey, [], binding)
        return binding

    async def unbind(self, device: Device, user_id: str) -> None:
        bindings = await self.store.list_bindings(device.productKey, device.deviceKey)
        if not any(b.userId == user_id for b in bindings):
            raise NotFound(f"user {user_id!r} is not bound to this device")
        await self.store.replace_bindings(device.productKey, device.deviceKey, [user_id], None)

    async def list_bindings(self, device: Device) -> list[Binding]:
        return await self.store.list_bindings(device.productKey, device.deviceKey)

    async def _binding_product(self, device: Device, user_id: str) -> Product:
        if not USER_ID.fullmatch(user_id):
            raise InvalidArgument("userId must be 1 to 64 letters, digits or _.@-")
        return await self.get_product(device.orgId, device.productKey)

    # ------------------------------------------------------------------ topology records

    async def attach(self, gateway: Device, sub: Device) -> Attachment:
        """Put `sub` under `gateway`, by the product rules (docs/protocol.md, section 6).

        A sub-device has one gateway. Attached elsewhere already, it moves when its
        product allows dynamic gateway switching; `moved_from` then names the gateway
        it left, to be told. Attaching it where it is changes nothing.
        """
        gateway_product = await self.get_product(gateway.orgId, gateway.productKey)
        sub_product = await self.get_product(gateway.orgId, sub.productKey)
        label = f"{sub.productKey}/{sub.deviceKey}"
        if gateway_product.settings.deviceType != "gateway":
            raise InvalidArgument(f"{gateway.productKey}/{gateway.deviceKey} is not a gateway")
        if sub_product.settings.deviceType == "gateway":
            raise InvalidArgument(f"{label} is a gateway; a gateway cannot be a sub-device")
        if sub.orgId != gateway.orgId:
            raise NotFound(f"device {label} does not exist")
        specified = sub_product.settings.specifiedGateway
        if specified.enabled and not (
            gateway.productKey in specified.gatewayProductKeys
            or any(
                (ref.productKey, ref.deviceKey) == (gateway.productKey, gateway.deviceKey)
                for ref in specified.gatewayDevices
            )
        ):
            raise Forbidden(
                f"product {sub.productKey} specifies its gateways, and"
                f" {gateway.productKey}/{gateway.deviceKey} is not one of them"
            )
        current = await self.store.get_topology(sub.productKey, sub.deviceKey)
        here = (gateway.productKey, gateway.deviceKey)
        if current is not None:
            if (current.gatewayProductKey, current.gatewayDeviceKey) == here:
                return Attachment(current, None)
            if not sub_product.settings.dynamicGatewaySwitching:
                raise Conflict(
                    f"{label} is under gateway {current.gatewayProductKey}/"
                    f"{current.gatewayDeviceKey}, and its product does not allow dynamic"
                    " gateway switching; delete it there first"
                )
        topo = Topology(
            gatewayProductKey=gateway.productKey,
            gatewayDeviceKey=gateway.deviceKey,
            productKey=sub.productKey,
            deviceKey=sub.deviceKey,
            createdAt=ids.now_ms(),
        )
        await self.store.put_topology(topo)
        for observer in self.observers:
            observer.topology_changed(sub.productKey, sub.deviceKey, here)
        return Attachment(topo, current)

    async def detach(self, sub: Device) -> bool:
        removed = await self.store.delete_topology(sub.productKey, sub.deviceKey)
        if removed:
            for observer in self.observers:
                observer.topology_changed(sub.productKey, sub.deviceKey, None)
        return removed

    async def sub_devices(self, gateway: Device) -> list[Topology]:
        return await self.store.list_topology(gateway.productKey, gateway.deviceKey)

    async def gateway_of(self, sub: Device) -> Topology | None:
        return await self.store.get_topology(sub.productKey, sub.deviceKey)

    # ------------------------------------------------------------------ product scripts

    async def put_product_script(self, org_id: str, product_key: str, body: Any) -> ProductScript:
        """Upload or replace a Custom product's data-parsing script (checked for shape
        here; whether it compiles, by the caller's engine before this)."""
        product = await self.get_product(org_id, product_key)
        if product.settings.dataFormat != "Custom":
            raise InvalidArgument(
                f"product {product_key!r} has dataFormat Json; scripts are for Custom products"
            )
        content = script_upload(body)
        script = ProductScript(
            productKey=product_key,
            orgId=org_id,
            scriptContent=content,
            version=version_of(content),
            updatedAt=ids.now_ms(),
        )
        await self.store.put_product_script(script)
        self._script_changed(product_key, script)
        return script

    async def get_product_script(self, org_id: str, product_key: str) -> ProductScript:
        await self.get_product(org_id, product_key)
        script = await self.store.get_product_script(product_key)
        if script is None:
            raise NotFound(f"product {product_key!r} has no script")
        return script

    async def delete_product_script(self, org_id: str, product_key: str) -> None:
        await self.get_product(org_id, product_key)
        if not await self.store.delete_product_script(product_key):
            raise NotFound(f"product {product_key!r} has no script")
        self._script_changed(product_key, None)

    def _script_changed(self, product_key: str, script: ProductScript | None) -> None:
        for listener in self.script_listeners:
            listener(product_key, script)
