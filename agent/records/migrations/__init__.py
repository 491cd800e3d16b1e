"""Alembic migrations for the call records (shipped inside the package)."""
