"""Workflow definitions, one process per module; `workflows.catalog.ALL_WORKFLOWS` lists them.

Deliberately empty: see workflows/catalog.py.
"""
