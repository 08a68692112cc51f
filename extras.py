"""The optional extras of pyproject.toml ([project.optional-dependencies]) and whether this environment
has them. The order worker's and the API's image leave the `analytics` extra out (docs/operations.md):
what needs it asks here first and says so in one line, instead of an ImportError from deep inside."""

from __future__ import annotations

import importlib.util
from enum import StrEnum


class Extra(StrEnum):
    analytics = (
        "analytics"  # the demand forecast (pandas, statsforecast) and the report's charts (matplotlib)
    )


# The modules each extra brings, looked up without importing them: pandas alone takes 1.5 s to import.
MODULES: dict[Extra, tuple[str, ...]] = {Extra.analytics: ("pandas", "statsforecast", "matplotlib")}


class ExtraMissing(RuntimeError):
    """`what` needs an extra this environment was installed without."""

    def __init__(self, extra: Extra, what: str) -> None:
        self.extra = extra
        super().__init__(
            f"{what} needs the `{extra}` extra ({', '.join(MODULES[extra])}), not installed here: "
            f"`uv sync --extra {extra}` (`make install` does), or run it in the `{extra}` image"
        )


def installed(extra: Extra) -> bool:
    return all(importlib.util.find_spec(module) is not None for module in MODULES[extra])


def require(extra: Extra, what: str) -> None:
    """Raise ExtraMissing, naming `what`, unless `extra` is installed."""
    if not installed(extra):
        raise ExtraMissing(extra, what)
