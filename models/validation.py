"""How a pydantic validation error reads to people: one `field.path: message` per problem."""

from __future__ import annotations

from pydantic import ValidationError


def field_problems(exc: ValidationError, whole: str = "order") -> list[str]:
    """Each validation error as `field.path: message` (the whole document is named `whole`)."""
    return [f"{'.'.join(str(p) for p in err['loc']) or whole}: {err['msg']}" for err in exc.errors()]
