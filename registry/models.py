"""The registry's records and the validated shapes that create or change them.

Field names follow EnOS's connection-service API (camelCase) so that an API body can
be validated by these models unchanged; gatehouse's extensions (the Quectel product
settings) use the same style.
"""

from __future__ import annotations

import base64
import re
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)

from registry.activation import Permission
from registry.catalogue import DEFAULT_CATEGORY, category

# Matched whole (fullmatch): with `^...$` and match(), "abcd\n" would pass, since `$`
# also matches before a trailing newline.
DEVICE_KEY = re.compile(r"[A-Za-z0-9_.\-]{4,32}")
PRODUCT_KEY = re.compile(r"[A-Za-z0-9_\-]{4,32}")
SECRET = re.compile(r"[A-Za-z0-9_\-]{8,64}")
MODEL_ID = re.compile(r"[A-Za-z0-9_\-.]{1,64}")
TIMEZONE = re.compile(r"[+-](0\d|1[0-4]):[0-5]\d")
CODEC_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")

DeviceType = Literal["direct", "gateway", "subdevice"]
ConnectedPlatform = Literal["DeveloperCenter", "ChinaTelecomAEP"]
# The console's labels, accepted on input.
PLATFORM_LABELS = {"Developer Center": "DeveloperCenter", "China Telecom AEP": "ChinaTelecomAEP"}
AccessMode = Literal["proxy", "integration"]
NetworkMethod = Literal["2G", "3G", "4G", "5G", "Wi-Fi", "NB-IoT", "Bluetooth"]
GATEWAY_NETWORKS = frozenset({"2G", "3G", "4G", "5G", "Wi-Fi"})
BindingMode = Literal["multi", "alternate", "single"]
DeviceState = Literal["inactive", "online", "offline", "disabled"]


def _matching(pattern: re.Pattern[str], rule: str) -> AfterValidator:
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(rule)
        return value

    return AfterValidator(check)


ProductKey = Annotated[str, _matching(PRODUCT_KEY, "must be 4 to 32 letters, digits, '_' or '-'")]
DeviceKey = Annotated[
    str, _matching(DEVICE_KEY, "must be 4 to 32 letters, digits, '_', '-' or '.'")
]
Secret = Annotated[str, _matching(SECRET, "must be 8 to 64 letters, digits, '_' or '-'")]
ModelId = Annotated[str, _matching(MODEL_ID, "must be 1 to 64 letters, digits or _-.")]
Timezone = Annotated[str, _matching(TIMEZONE, "must look like +08:00 or -05:30")]
CodecName = Annotated[str, _matching(CODEC_NAME, "must be 1 to 64 letters, digits or _-.")]

# NB-IoT eDRX cycles run from 20.48 s to 10485.76 s (3GPP TS 24.008).
EDRX_MIN_S = 20.48
EDRX_MAX_S = 10485.76


def _i18n(value: Any) -> Any:
    # A plain string is the common case in scripts and the CLI; EnOS sends the struct.
    return {"defaultValue": value} if isinstance(value, str) else value


class I18nString(BaseModel):
    model_config = ConfigDict(extra="forbid")
    defaultValue: str = Field(min_length=1, max_length=100)
    i18nValue: dict[str, str] = Field(default_factory=dict)


I18n = Annotated[I18nString, BeforeValidator(_i18n)]
Tags = Annotated[dict[str, str], Field(max_length=100)]


class PowerSaving(BaseModel):
    """NB-IoT power-saving mode on China Telecom AEP; `edrxCycle` (seconds) only with
    eDRX, `qmode` (commands issued in Qmode, in the device's wake window) only with DRX."""

    model_config = ConfigDict(extra="forbid")
    mode: Literal["PSM", "DRX", "eDRX"]
    edrxCycle: float | None = None
    qmode: bool = False

    @model_validator(mode="after")
    def _cycle(self) -> PowerSaving:
        if self.qmode and self.mode != "DRX":
            raise ValueError(f"qmode applies only to DRX, not {self.mode}")
        if self.mode == "eDRX":
            if self.edrxCycle is None:
                raise ValueError("eDRX needs edrxCycle (seconds)")
            if not EDRX_MIN_S <= self.edrxCycle <= EDRX_MAX_S:
                raise ValueError(f"edrxCycle must be {EDRX_MIN_S} to {EDRX_MAX_S} seconds")
        elif self.edrxCycle is not None:
            raise ValueError(f"edrxCycle applies only to eDRX, not {self.mode}")
        return self


class GatewayDeviceRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    productKey: ProductKey
    deviceKey: DeviceKey


class SpecifiedGateway(BaseModel):
    """Which gateways a sub-device of this product may be added to and log in through."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = False
    gatewayProductKeys: list[ProductKey] = Field(default_factory=list, max_length=100)
    gatewayDevices: list[GatewayDeviceRef] = Field(default_factory=list, max_length=1000)

    @model_validator(mode="after")
    def _named(self) -> SpecifiedGateway:
        if self.enabled and not (self.gatewayProductKeys or self.gatewayDevices):
            raise ValueError("an enabled specified gateway must name gateway products or devices")
        return self


class ProductSettings(BaseModel):
    """Every setting of a product, validated as a whole (create, and update after merging)."""

    model_config = ConfigDict(extra="forbid")

    productName: I18n
    productDesc: str = Field(default="", max_length=500)
    productTags: Tags = Field(default_factory=dict)
    # A catalogue category (registry.catalogue); one with a standard thing model gives
    # the product that model.
    category: str = Field(default=DEFAULT_CATEGORY, max_length=64)
    deviceType: DeviceType = "direct"
    networkMethod: NetworkMethod | None = None
    dataFormat: Literal["Json", "Custom"] = "Json"
    # Custom products: the codec that turns raw bytes into TSL requests and replies back.
    codec: CodecName | None = None
    # NB-IoT only: how the devices reach the platform; encryption and powerSaving are
    # chosen on China Telecom AEP.
    connectedPlatform: ConnectedPlatform | None = None
    encryption: Literal["DTLS", "plaintext"] | None = None
    powerSaving: PowerSaving | None = None
    # Sub-device products only: which gateways, and how a gateway carries the devices.
    specifiedGateway: SpecifiedGateway = Field(default_factory=SpecifiedGateway)
    gatewayAccessMode: AccessMode | None = None
    dynamicGatewaySwitching: bool = True
    bindingMode: BindingMode | None = None
    sharingEnabled: bool = True
    biDirectionalAuth: bool = False
    dynamicActivateEnabled: bool = False
    defaultValidDay: int = Field(default=730, ge=1, le=3650)
    maxValidDay: int = Field(default=1095, ge=1, le=3650)
    modelId: ModelId
    activationQuota: int | None = Field(default=None, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _product_type(cls, data: Any) -> Any:
        """EnOS's `productType` (Device, Gateway) and the `TSL` label are accepted on input."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        product_type = data.pop("productType", None)
        if product_type is not None:
            mapped = {"Device": "direct", "Gateway": "gateway"}.get(product_type)
            if mapped is None:
                raise ValueError(f"productType must be Device or Gateway, not {product_type!r}")
            given = data.get("deviceType")
            if (
                given is not None
                and given != mapped
                and not (given == "subdevice" and mapped == "direct")
            ):
                raise ValueError(f"productType {product_type} contradicts deviceType {given}")
            data.setdefault("deviceType", mapped)
        if data.get("dataFormat") == "TSL":
            data["dataFormat"] = "Json"
        chosen = data.get("category")
        if isinstance(chosen, str) and chosen:
            template = category(chosen)
            if template.modelId is not None:
                data.setdefault("modelId", template.modelId)
        platform = data.get("connectedPlatform")
        if isinstance(platform, str):
            data["connectedPlatform"] = PLATFORM_LABELS.get(platform, platform)
        return data

    @model_validator(mode="after")
    def _rules(self) -> ProductSettings:
        if self.codec is not None and self.dataFormat != "Custom":
            raise ValueError("codec applies only to products whose dataFormat is Custom")
        if self.defaultValidDay > self.maxValidDay:
            raise ValueError(
                f"defaultValidDay {self.defaultValidDay} is above maxValidDay {self.maxValidDay}"
            )
        self._category_rules()
        self._network_rules()
        self._sub_device_rules()
        bluetooth = self.networkMethod == "Bluetooth"
        if self.bindingMode is None:
            self.bindingMode = "alternate" if bluetooth else "multi"
        elif bluetooth and self.bindingMode == "multi":
            raise ValueError("a Bluetooth product's bindingMode must be alternate or single")
        return self

    def _category_rules(self) -> None:
        template = category(self.category)
        if template.deviceType is not None and template.deviceType != self.deviceType:
            raise ValueError(
                f"category {template.categoryId} is for {template.deviceType} products,"
                f" not {self.deviceType}"
            )
        if template.modelId is not None and self.modelId != template.modelId:
            raise ValueError(
                f"category {template.categoryId} defines its thing model: modelId must be"
                f" {template.modelId} (or left out)"
            )

    def _network_rules(self) -> None:
        """Quectel's network connection method, connected platform, encryption and power
        saving: NB-IoT only for directly connected devices, gateways 2G to 5G or Wi-Fi,
        sub-devices none; the platform only for NB-IoT; encryption and power saving
        only on China Telecom AEP."""
        network = self.networkMethod
        if self.deviceType == "subdevice" and network is not None:
            raise ValueError(
                "a sub-device product has no networkMethod: its devices connect through a gateway"
            )
        if self.deviceType == "gateway" and network is not None and network not in GATEWAY_NETWORKS:
            raise ValueError(f"a gateway's networkMethod must be 2G to 5G or Wi-Fi, not {network}")
        if network != "NB-IoT":
            if self.connectedPlatform is not None:
                raise ValueError("connectedPlatform applies only to NB-IoT products")
            if self.encryption is not None:
                raise ValueError("encryption (DTLS or plaintext) applies only to NB-IoT products")
            if self.powerSaving is not None:
                raise ValueError("powerSaving (PSM, DRX, eDRX) applies only to NB-IoT products")
            return
        if self.connectedPlatform is None:
            # Encryption and power saving exist only on AEP: giving one names the platform.
            chosen = self.encryption is not None or self.powerSaving is not None
            self.connectedPlatform = "ChinaTelecomAEP" if chosen else "DeveloperCenter"
        if self.connectedPlatform == "DeveloperCenter":
            if self.encryption is not None or self.powerSaving is not None:
                raise ValueError(
                    "encryption and powerSaving are chosen on connectedPlatform ChinaTelecomAEP;"
                    " on DeveloperCenter the NB broker decides (see the README)"
                )
            return
        if self.powerSaving is None:
            raise ValueError("connectedPlatform ChinaTelecomAEP needs powerSaving (PSM, DRX, eDRX)")
        if self.encryption is None:
            self.encryption = "DTLS"

    def _sub_device_rules(self) -> None:
        if self.deviceType != "subdevice":
            if self.specifiedGateway.enabled:
                raise ValueError("specifiedGateway applies only to sub-device products")
            if self.gatewayAccessMode is not None:
                raise ValueError("gatewayAccessMode applies only to sub-device products")
        elif self.gatewayAccessMode is None:
            self.gatewayAccessMode = "proxy"

    @property
    def productType(self) -> str:
        return "Gateway" if self.deviceType == "gateway" else "Device"

    @property
    def delivery_mode(self) -> Literal["PSM", "eDRX"] | None:
        """How commands reach a device: PSM holds them for its next uplink, eDRX sends
        them while it is connected and holds them otherwise, None sends them at once.

        DRX with Qmode, and NB-IoT on the Developer Center platform, are PSM: the
        device is reachable only in the window after it has sent something."""
        saving = self.powerSaving
        if saving is not None:
            if saving.mode == "DRX":
                return "PSM" if saving.qmode else None
            return saving.mode
        if self.networkMethod == "NB-IoT" and self.connectedPlatform == "DeveloperCenter":
            return "PSM"
        return None


class ProductCreate(ProductSettings):
    """A create body: the settings, plus a fixed key and secret for provisioned set-ups."""

    productKey: ProductKey | None = None
    productSecret: Secret | None = None
    projectId: str | None = Field(default=None, max_length=32)

    def settings(self) -> ProductSettings:
        data = self.model_dump(exclude={"productKey", "productSecret", "projectId"})
        return ProductSettings.model_validate(data)


DevelopmentStatus = Literal["development", "released"]


class Product(BaseModel):
    """A stored product: its settings, and where it stands (project, development status)."""

    orgId: str
    productKey: str
    productSecret: str
    settings: ProductSettings
    createdAt: int
    projectId: str = "default"
    developmentStatus: DevelopmentStatus = "development"
    releasedAt: int | None = None
    hasImage: bool = False

    def view(self) -> dict[str, Any]:
        """The API's view of a product (secret included: the caller owns it)."""
        data = self.settings.model_dump(mode="json")
        data.update(
            productKey=self.productKey,
            productSecret=self.productSecret,
            productType=self.settings.productType,
            orgId=self.orgId,
            createdAt=self.createdAt,
            projectId=self.projectId,
            developmentStatus=self.developmentStatus,
            releasedAt=self.releasedAt,
            hasImage=self.hasImage,
        )
        return data


class DeviceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    productKey: ProductKey
    deviceName: I18n
    timezone: Timezone
    deviceKey: DeviceKey | None = None
    deviceSecret: Secret | None = None
    deviceDesc: str = Field(default="", max_length=500)
    deviceAttributes: dict[str, Any] = Field(default_factory=dict, max_length=100)
    deviceTags: Tags = Field(default_factory=dict)


class DeviceUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    deviceName: I18n | None = None
    timezone: Timezone | None = None
    deviceDesc: str | None = Field(default=None, max_length=500)
    deviceAttributes: dict[str, Any] | None = Field(default=None, max_length=100)
    deviceTags: Tags | None = None


class Device(BaseModel):
    """A stored device; `state` is derived from the enabled, activated and online flags."""

    orgId: str
    productKey: str
    deviceKey: str
    deviceSecret: str
    assetId: str
    deviceName: I18nString
    timezone: str
    deviceDesc: str
    deviceAttributes: dict[str, Any]
    deviceTags: dict[str, str]
    enabled: bool
    online: bool
    activatedAt: int | None
    lastSeenAt: int | None
    createdAt: int

    @property
    def state(self) -> DeviceState:
        if not self.enabled:
            return "disabled"
        if self.online:
            return "online"
        return "offline" if self.activatedAt is not None else "inactive"

    def view(self) -> dict[str, Any]:
        data = self.model_dump(mode="json", exclude={"deviceSecret", "orgId"})
        data["state"] = self.state
        return data

    def credentials(self) -> dict[str, str]:
        return {
            "productKey": self.productKey,
            "deviceKey": self.deviceKey,
            "deviceSecret": self.deviceSecret,
            "assetId": self.assetId,
        }


class ThingModelCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    modelId: ModelId
    name: str = Field(default="", max_length=100)
    desc: str = Field(default="", max_length=500)
    tsl: dict[str, Any]


class ThingModel(BaseModel):
    orgId: str
    modelId: str
    name: str
    desc: str
    tsl: dict[str, Any]
    createdAt: int

    def view(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"orgId"})


class Organization(BaseModel):
    orgId: str
    name: str
    accessKey: str
    secretHash: str
    admin: bool
    createdAt: int
    # What the key that authenticated may do: the organisation's own key is full access,
    # an extra key (registry.activation.AccessKey) full or read only.
    permission: Permission = "full"


class Project(BaseModel):
    """A Developer Center project: an organisation's products live in one."""

    orgId: str
    projectId: str
    name: str
    description: str = ""
    createdAt: int

    def view(self) -> dict[str, Any]:
        return self.model_dump(exclude={"orgId"})


class ProductImage(BaseModel):
    productKey: str
    contentType: Literal["image/png", "image/jpeg"]
    content: bytes
    updatedAt: int


class Binding(BaseModel):
    productKey: str
    deviceKey: str
    userId: str
    role: Literal["owner", "shared"]
    sharedBy: str | None = None
    createdAt: int


class Topology(BaseModel):
    gatewayProductKey: str
    gatewayDeviceKey: str
    productKey: str
    deviceKey: str
    createdAt: int


class ProductStats(BaseModel):
    productKey: str
    total: int
    activated: int
    online: int


CommandKind = Literal["service", "setMeasurepoint", "raw"]
CommandState = Literal[
    "pending", "sent", "succeeded", "failed", "timed_out", "cancelled", "expired"
]
OPEN_STATES = ("pending", "sent")


class Command(BaseModel):
    """A command to a device, from the moment it is accepted until it ends."""

    commandId: str
    orgId: str
    productKey: str
    deviceKey: str
    kind: CommandKind
    serviceId: str = ""
    input: bytes  # JSON params, or the raw bytes of a raw command
    requestId: str  # the id of the message the device gets
    state: CommandState
    createdAt: int
    timeoutMs: int
    expiresAt: int | None = None  # a pending command expires then
    sentAt: int | None = None
    replyBy: int | None = None  # a sent command times out then
    finishedAt: int | None = None
    replyCode: int | None = None
    output: bytes | None = None
    message: str = ""
    mismatch: str = ""  # how the reply broke the thing model, when it did

    @property
    def open(self) -> bool:
        return self.state in OPEN_STATES

    def view(self) -> dict[str, Any]:
        data = self.model_dump(mode="json", exclude={"orgId", "input", "output", "requestId"})
        if self.kind == "raw":
            data["payloadBase64"] = base64.b64encode(self.input).decode()
            if self.output is not None:
                data["outputBase64"] = base64.b64encode(self.output).decode()
        else:
            data["inputData"] = orjson.loads(self.input)
            if self.output is not None:
                data["outputData"] = orjson.loads(self.output)
        return data


class Certificate(BaseModel):
    """A device certificate issued by gatehouse's CA."""

    certSN: str
    orgId: str
    productKey: str
    deviceKey: str
    certPem: str
    notBefore: int
    notAfter: int
    revokedAt: int | None = None
    createdAt: int

    def view(self) -> dict[str, Any]:
        data = self.model_dump(mode="json", exclude={"orgId", "certPem"})
        data["cert"] = self.certPem
        data["revoked"] = self.revokedAt is not None
        return data
