"""Activation codes (Quectel's "Purchase Activation Code") and access keys with a
permission (EnOS's "Device Management: Full Access" or read only).

A product's codes are bought in batches, each with a validity period. A device takes
one when it activates (its first admitted connection); the code's period runs from
then. When it ends the device takes the next code left; with none left it is refused
(an online one is disconnected) and is inactive again. A product that has never had a
code is not held to codes (README, "Activation codes").
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_BATCH = 10_000  # codes in one purchase
MAX_VALID_SECONDS = 3650 * 86_400  # ten years, EnOS's longest certificate too
ACCESS_KEY_LIMIT = 100  # extra access keys per organisation

Permission = Literal["full", "read"]


class CodePurchase(BaseModel):
    """A purchase body: how many codes, and how long each one lasts once taken."""

    model_config = ConfigDict(extra="forbid")

    count: int = Field(ge=1, le=MAX_BATCH)
    validDays: int | None = Field(default=None, ge=1, le=3650)
    # Seconds, for short trial periods (and tests); exactly one of the two is given.
    validSeconds: int | None = Field(default=None, ge=1, le=MAX_VALID_SECONDS)

    @model_validator(mode="after")
    def _one_period(self) -> Self:
        if (self.validDays is None) == (self.validSeconds is None):
            raise ValueError("give the validity period as validDays or validSeconds (one of them)")
        return self

    @property
    def valid_seconds(self) -> int:
        if self.validSeconds is not None:
            return self.validSeconds
        return (self.validDays or 0) * 86_400


class ActivationCode(BaseModel):
    """One code: free until a device takes it; then it lasts until `expiresAt`."""

    code: str
    productKey: str
    batchId: str
    validSeconds: int
    purchasedAt: int
    deviceKey: str | None = None
    consumedAt: int | None = None
    expiresAt: int | None = None

    def status(self, now_ms: int) -> Literal["available", "in-use", "expired"]:
        if self.expiresAt is None:
            return "available"
        return "in-use" if self.expiresAt > now_ms else "expired"

    def view(self, now_ms: int) -> dict[str, object]:
        return {**self.model_dump(), "status": self.status(now_ms)}


class CodeTotals(BaseModel):
    """A product's codes: bought, not yet taken, taken by a device (in use or spent)."""

    productKey: str
    total: int
    available: int
    consumed: int
    inUse: int


class AccessKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    permission: Permission = "read"
    description: str = Field(default="", max_length=200)


class AccessKey(BaseModel):
    """An extra access key of an organisation; its secret is kept only as a hash."""

    accessKey: str
    orgId: str
    secretHash: str
    permission: Permission
    description: str = ""
    createdAt: int

    def view(self) -> dict[str, object]:
        return self.model_dump(exclude={"secretHash"})
