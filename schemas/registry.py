"""Registry records: agencies and administrative law-enforcement units (行政执法单位).

Each has a leader in charge (分管领导), one liaison officer (联络员) and a callback endpoint.
The endpoint's signing secret lives only in PostgreSQL; it is never part of these models'
output to workflows.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator, model_validator

from schemas.actions import Action
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
    # The JWT `sub` this person signs in to the Web UI as (the county's OIDC login); Temporal
    # records it on the events their actions carry (docs/deployment.md, 身份核验). Unique.
    principal: str | None = Field(None, min_length=1, max_length=255, pattern=r"^\S+$")


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
        principals: set[str] = set()
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
                    if op.principal is not None:
                        if op.principal in principals:
                            raise DuplicateCode(kind, index, op.principal, ("operators", n, "principal"))
                        principals.add(op.principal)
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
    action: Action = Field(description="e.g. clue.transfer, rectification.review (schemas/actions.py)")
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


# --- identity check (activities/principal.py, rules/principal.py) --------------------------------


class PrincipalCheckInput(BaseModel):
    """Which action to check: the start of a run, one signal, or one update."""

    workflow_id: str = Field(min_length=1)
    run_id: str = Field("", description="empty: the run of the calling activity, else the current run")
    kind: Literal["start", "signal", "update"]
    update_id: str | None = None
    signal_name: str | None = None
    signal_ordinal: int | None = Field(None, ge=0, description="0-based, among this run's signals of that name")
    signal_event_id: int | None = Field(None, ge=1)
    operator: str | None = Field(None, description="the operator typed into the action (a claim)")
    require: bool | None = Field(None, description="None: DUCHA_REQUIRE_PRINCIPAL")

    @model_validator(mode="after")
    def _target(self) -> PrincipalCheckInput:
        if self.kind == "update" and not self.update_id:
            raise ValueError("kind update needs update_id")
        if self.kind == "signal" and self.signal_event_id is None and (
            not self.signal_name or self.signal_ordinal is None
        ):
            raise ValueError("kind signal needs signal_event_id, or signal_name and signal_ordinal")
        return self


class PrincipalCheckOutput(BaseModel):
    allowed: bool
    identity_verified: bool
    operator: str | None = None
    reason: str = ""
    principal_type: str | None = None  # the verified caller, when there is one
    principal_name: str | None = None
    recorded: str | None = Field(None, description="type/name stamped on the event, whoever it names")
    event_id: int | None = None
    event_type: str | None = None
    events_read: int = 0
    pages: int = 0
