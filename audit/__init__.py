"""Verification of the tamper-evident ledger chain."""
