"""Workflow classes; the worker registers ALL_WORKFLOWS."""

ALL_WORKFLOWS: list[type] = []
