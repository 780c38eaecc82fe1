"""The ledger's Alembic migrations (a package so that they ship with realtalk)."""
