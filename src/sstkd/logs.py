"""The console's log lines: Rich on a terminal, plain full-width lines everywhere else.

Rich wraps every message at the console's width, 80 columns when stdout is a file, a pipe or a CI log: the
study's summary, the one thing a user came for, became a column of fragments in ``make run > run.log``. Off a
terminal each record is one unwrapped line (a multi-line message keeps its own line breaks), so a log file reads
like the terminal did and ``grep`` finds whole lines.
"""

from __future__ import annotations

import logging
import sys

PLAIN_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
PLAIN_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


def on_terminal() -> bool:
    """Whether stdout, where the console log goes, is a terminal."""
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


def plain_lines_off_terminal(logger: logging.Logger | None = None) -> None:
    """Replace each RichHandler of ``logger`` (the root logger) by plain :data:`PLAIN_FORMAT` lines on stdout when
    stdout is not a terminal; idempotent. (Done in code: ``logging.yml`` cannot name a project class, Kedro
    refuses handler classes outside ``logging`` and ``kedro.logging``.)"""
    from kedro.logging import RichHandler

    if on_terminal():
        return
    logger = logging.getLogger() if logger is None else logger
    for handler in list(logger.handlers):
        if isinstance(handler, RichHandler):
            plain = logging.StreamHandler(sys.stdout)
            plain.setFormatter(logging.Formatter(PLAIN_FORMAT, PLAIN_DATE_FORMAT))
            plain.setLevel(handler.level)
            for log_filter in handler.filters:
                plain.addFilter(log_filter)
            logger.removeHandler(handler)
            logger.addHandler(plain)
