"""Reports built from the ledger (bulletin, ledger pages, annual acceptance report): read-only SQL, no Temporal."""
