"""Registry records: agencies and administrative law-enforcement units (行政执法单位).

Each has a leader in charge (分管领导), one liaison officer (联络员) and a callback endpoint.
The endpoint's signing secret lives only in PostgreSQL; it is never part of these models'
output to workflows.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator, model_validator

from schemas.codes import CODE_PATTERN, AgencyCode


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Contact(Strict):
    name: str = Field(min_length=1, max_length=50)
    title: str = Field("", max_length=50)
    phone: str = Field("", max_length=30, pattern=r"^[0-9+\- ]*$")


class CallbackSpec(Strict):
    url: HttpUrl
    secret: str | None = Field(
        None, description="whsec_ + base64; generated on first load when omitted"
    )

    @field_validator("secret")
    @classmethod
    def _whsec(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("whsec_"):
            raise ValueError("secret must start with whsec_")
        return value


class OperatorEntry(Strict):
    """A person who acts in the Web UI for this agency or unit (`"operator"` in updates)."""

    id: str = Field(min_length=1, max_length=50, description="工号 or the registered name; unique county-wide")
    name: str = Field(min_length=1, max_length=50)
    roles: list[Literal["clerk", "inspector", "supervisor"]] = Field(default_factory=lambda: ["clerk"])
    active: bool = True


class AgencyEntry(Strict):
    code: AgencyCode
    name: str = Field(min_length=1, max_length=100)
    leader: Contact
    liaison: Contact
    callback: CallbackSpec | None = None
    operators: list[OperatorEntry] = Field(default_factory=list)


class UnitEntry(Strict):
    code: str = Field(pattern=CODE_PATTERN)
    name: str = Field(min_length=1, max_length=100)
    level: Literal["county", "township"] = "county"
    category: str = Field("", max_length=50, description="e.g. 市场监管, 自然资源")
    leader: Contact
    liaison: Contact
    callback: CallbackSpec | None = None
    operators: list[OperatorEntry] = Field(default_factory=list)
    active: bool = True


class RegistryFile(Strict):
    """The YAML file read by `ducha registry load` (see docs/operators.md)."""

    county: str = Field(min_length=1, max_length=50)
    agencies: list[AgencyEntry] = Field(default_factory=list)
    units: list[UnitEntry] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_codes(self) -> RegistryFile:
        seen: set[str] = set()
        operators: set[str] = set()
        for kind, entries in (("agencies", self.agencies), ("units", self.units)):
            for index, entry in enumerate(entries):
                code = str(entry.code)
                if code in seen:
                    raise DuplicateCode(kind, index, code)
                seen.add(code)
                for n, op in enumerate(entry.operators):
                    if op.id in operators:
                        raise DuplicateCode(kind, index, op.id, ("operators", n, "id"))
                    operators.add(op.id)
        return self


class DuplicateCode(ValueError):
    def __init__(self, kind: str, index: int, code: str, field: tuple = ("code",)) -> None:
        super().__init__(f"duplicate code {code!r} / 代码重复")
        self.loc = (kind, index, *field)


class Party(BaseModel):
    """A registry entry as workflows and reports see it (no secret)."""

    code: str
    kind: Literal["agency", "unit"]
    name: str
    level: str | None = None
    category: str | None = None
    leader: Contact
    liaison: Contact
    callback_url: str | None = None
    callback_enabled: bool = False
    active: bool = True


# --- registry activities' inputs and outputs (used by workflows) ---------------------------------


class AuthorizeInput(BaseModel):
    operator: str
    agency: str
    action: str = Field(description="e.g. clue.transfer, rectification.review (rules/permissions.py)")
    workflow_id: str


class LookupPartiesInput(BaseModel):
    codes: list[str]


class OperatorGrant(BaseModel):
    """What a case workflow holds of one operator, to refuse an unauthorized update before it is
    accepted (the step's transaction checks PostgreSQL again)."""

    party: str
    roles: list[str] = Field(default_factory=list)
    active: bool = True


class LookupPartiesOutput(BaseModel):
    found: dict[str, Party]
    missing: list[str]
    operators: dict[str, OperatorGrant] = Field(default_factory=dict, description="of the parties found, by id")
