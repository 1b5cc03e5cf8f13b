"""Read a YAML file into a pydantic model, reporting errors with their line numbers."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class FileError(ValueError):
    """A bad input file: every message names the file, the line and the reason."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("\n".join(messages))
        self.messages = messages


def _line_of(node: yaml.Node | None, loc: tuple) -> int | None:
    """Walk the composed YAML tree along a pydantic error location; return a 1-based line."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = next((v for k, v in node.value if k.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            nxt = node.value[part]
        else:
            nxt = None
        if nxt is None:
            break
        node = nxt
        line = node.start_mark.line + 1
    return line


def load_yaml_model(path: Path, model: type[M]) -> M:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FileError([f"{path}: 无法读取 / cannot read: {exc.strerror}"]) from None
    try:
        tree = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise FileError([f"{where}: YAML 格式错误 / malformed YAML: {getattr(exc, 'problem', exc)}"]) from None
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as exc:
        messages = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            ctx_error = (err.get("ctx") or {}).get("error")
            if loc == () and hasattr(ctx_error, "loc"):
                loc = ctx_error.loc
            line = _line_of(tree, loc)
            field = ".".join(str(p) for p in loc) or "(file)"
            reason = err["msg"].removeprefix("Value error, ")
            messages.append(f"{path}:{line or '?'}: {field}: {reason}")
        raise FileError(messages) from None
