"""How the processes log: one line per record, with control characters in the message escaped.

A message may quote what a request carried (a path, an id, a reason): written raw, a newline in it
would start a line of its own that reads like another record (a forged audit line, say). Tracebacks
keep their lines: they are the program's, and each follows the record it belongs to.
"""

from __future__ import annotations

import logging

from models.text import printable

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class EscapingFormatter(logging.Formatter):
    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        record.message = printable(record.message)
        return super().formatMessage(record)


def configure_logging(level: int = logging.INFO) -> None:
    """The root logger of a worker or API process: INFO and up, to stderr, escaped."""
    handler = logging.StreamHandler()
    handler.setFormatter(EscapingFormatter(FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
