"""The pieces every part of the tenants file is built from: frozen models, secrets, errors."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from salespulse.core.errors import SalesPulseError

TenantName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
CurrencyCode = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
# The languages the wall and the API's display strings are translated into.
Locale = Literal["en", "uk", "ru"]
Month = Annotated[str, Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")]
Money = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]


class TenantsFileError(SalesPulseError):
    """The tenants file cannot be used; the message names the file, key and problem."""


class FrozenModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Secret(FrozenModel):
    """Where a secret lives: an environment variable or a file. Never the value itself."""

    env: str | None = None
    file: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _never_the_value(cls, data: object) -> object:
        if isinstance(data, str | int):  # the secret itself, written into the file
            # ValueError, not TypeError: only it becomes a validation error naming the field
            raise ValueError(  # noqa: TRY004
                "a secret is read from `{env: VARIABLE}` or `{file: /path}`, never written "
                "into the tenants file itself"
            )
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> Secret:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of `env` or `file`")
        return self

    def reveal(self) -> SecretStr:
        if self.env is not None:
            value = os.environ.get(self.env)
            if value is None:
                raise TenantsFileError(f"secret: environment variable {self.env} is not set")
            return SecretStr(value)
        assert self.file is not None  # narrowing: the validator guarantees one of the two
        try:
            return SecretStr(self.file.read_text().strip())
        except OSError as exc:
            raise TenantsFileError(f"secret: cannot read {self.file}: {exc.strerror}") from None
