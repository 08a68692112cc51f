"""Pydantic models that cross the Temporal boundary (orders.py, steps.py) and SQLAlchemy tables (tables.py)."""
