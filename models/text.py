"""Control characters: what no identifier or line of text may hold, and how to show one safely."""

from __future__ import annotations

import re

# Control characters (C0, DEL, C1), lone surrogates (not encodable, so not storable) and the Unicode
# line and paragraph separators. PostgreSQL refuses NUL in any text; the others break logs and tables.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def printable(text: str) -> str:
    """`text` with each control character written as its escape (`\\x00`, `\\n`): for logs and for
    echoing a refused value back, where a raw one could forge a line or break a column."""
    return CONTROL_CHARACTERS.sub(lambda found: repr(found.group())[1:-1], text)
