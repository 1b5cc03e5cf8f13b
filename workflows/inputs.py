"""Guard for inputs that decode to something other than the declared model.

The data converter turns JSON `null` (or a missing argument) into None rather than failing, so
a workflow would crash on its first attribute access and retry that task forever. These checks
turn it into a clear, non-retryable failure (start) or a dropped signal instead."""

from __future__ import annotations

from typing import TypeVar

from temporalio import workflow
from temporalio.exceptions import ApplicationError

M = TypeVar("M")


def require(value: object, model: type[M]) -> M:
    """The start input, or a non-retryable failure naming what was expected."""
    if not isinstance(value, model):
        raise ApplicationError(
            f"缺少或无法识别的输入，应为 {model.__name__} 的 JSON 对象 / "
            f"missing or unreadable input: expected a JSON object for {model.__name__}",
            type="InvalidInput",
            non_retryable=True,
        )
    return value


def usable(value: object, model: type) -> bool:
    """For signals: False (and a log line) when the payload is not the model."""
    if isinstance(value, model):
        return True
    workflow.logger.warning("ignored a signal whose input is not a %s", model.__name__)
    return False
