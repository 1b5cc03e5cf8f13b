"""Every string and list an operator can send (start inputs, updates, signals) has a cap, so no
input can grow a workflow's history without bound (docs/operators.md, "Input limits")."""

from __future__ import annotations

import inspect
import re
import typing
from enum import Enum

from annotated_types import GroupedMetadata, MaxLen
from pydantic import BaseModel

import schemas.assessment
import schemas.clue
import schemas.common
import schemas.digest
import schemas.inspection
import schemas.rectification
import schemas.risk
import schemas.round
from schemas.common import Model

MODULES = (schemas.clue, schemas.rectification, schemas.inspection, schemas.common, schemas.round,
           schemas.risk, schemas.assessment, schemas.digest)
# The state a workflow hands to its own next run (continue-as-new); refused from anyone else.
OWN_STATE = {"resume", "state"}
BOUNDED_PATTERN = re.compile(r"^\^.*\$$")


def _capped(metadata: list, allow_pattern: bool) -> bool:
    expanded = [x for m in metadata for x in (m if isinstance(m, GroupedMetadata) else [m])]
    for m in expanded + [m for m in metadata if isinstance(m, GroupedMetadata)]:
        if isinstance(m, MaxLen):
            return True
        pattern = getattr(m, "pattern", None)
        if allow_pattern and pattern and BOUNDED_PATTERN.match(pattern) and "*" not in pattern and "+" not in pattern:
            return True
    return False


def _problems(model: type[BaseModel], path: str, seen: set) -> list[str]:
    if model in seen:
        return []
    seen.add(model)
    out = []
    for name, field in model.model_fields.items():
        if name in OWN_STATE:
            continue
        out += _check(field.annotation, list(field.metadata), f"{path}.{name}", seen)
    return out


def _check(ann, metadata: list, where: str, seen: set) -> list[str]:
    origin = typing.get_origin(ann)
    args = typing.get_args(ann)
    if origin is typing.Annotated:
        return _check(args[0], metadata + list(args[1:]), where, seen)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return [p for a in args if a is not type(None) for p in _check(a, metadata, where, seen)]
    if ann is str:
        return [] if _capped(metadata, allow_pattern=True) else [f"{where}: str without max_length"]
    if origin in (list, set, tuple, dict):
        out = [] if _capped(metadata, allow_pattern=False) else [f"{where}: {origin.__name__} without max_length"]
        for a in args:
            out += _check(a, [], f"{where}[]", seen)
        return out
    if inspect.isclass(ann) and issubclass(ann, BaseModel):
        return _problems(ann, where, seen)
    if inspect.isclass(ann) and issubclass(ann, Enum | int | float | bool):
        return []
    return []


def operator_inputs() -> list[type[BaseModel]]:
    found = []
    for module in MODULES:
        for value in vars(module).values():
            if inspect.isclass(value) and issubclass(value, Model) and value.__module__ == module.__name__:
                found.append(value)
    return found


def test_there_are_operator_inputs_to_check():
    names = {m.__name__ for m in operator_inputs()}
    assert {"ClueStart", "RectificationStart", "UnitInspectionStart", "SubmitReport", "Note"} <= names


def test_every_operator_string_and_list_is_capped():
    problems = [p for model in operator_inputs() for p in _problems(model, model.__name__, set())]
    assert not problems, "\n".join(problems)
