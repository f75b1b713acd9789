"""Mistakes a user can fix, and how the command line reports them.

Every expected failure (a dataset problem, an unreadable or truncated file, a malformed ``classes.json``, a held
run lock, a full disk, a model of another dataset, missing pretrained weights...) raises a :class:`UserError`.
At the command line's edge (:func:`install_short_errors`, installed by the project's Kedro hooks) such an error
ends the run with one short ``Error: <what>, <file>: <fix>`` message on stderr and exit status 1, wherever it
was raised (inside a node, a dataset's load or a hook: Kedro and pluggy wrap it, the cause chain keeps it).
``SSTKD_TRACEBACK=1`` shows the full traceback as well. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

TRACEBACK_VARIABLE = "SSTKD_TRACEBACK"
MAX_MESSAGE_LINES = 8  # an error with a long list of problems (a dataset's) shows the first ones


class UserError(Exception):
    """A mistake the user can fix. ``UserError(what, file, fix)`` reads ``<what>, <file>: <fix>``; subclasses
    that build their own message pass it alone."""

    def __init__(self, what: str, file: str | Path | None = None, fix: str = ""):
        self.what, self.file, self.fix = what, None if file is None else shown_path(file), fix
        super().__init__(what + (f", {self.file}" if file is not None else "") + (f": {fix}" if fix else ""))


class UnreadableFileError(UserError, ValueError):
    """A file the run needs is truncated, corrupt or of the wrong kind (an interrupted copy, a partial download)."""


class MalformedFileError(UserError, ValueError):
    """A file the user wrote (``classes.json``, ``classes.txt``, a split list) does not parse."""

    def __init__(self, what: str, file: str | Path, fix: str, line: int | None = None):
        super().__init__(what, f"{file}{f' line {line}' if line else ''}", fix)
        self.line = line


class MissingFileError(UserError, FileNotFoundError):
    """A file the run needs does not exist (e.g. the pretraining stage's weights, a stage's output)."""


class ModelMismatchError(UserError, ValueError):
    """A model file made for another dataset, class count or architecture than the run's."""


def shown_path(path: str | Path) -> str:
    """``path`` as a user would type it: relative to the working directory (a project's root) when under it."""
    text = str(path)
    try:
        resolved = Path(text).resolve()
        return str(resolved.relative_to(Path.cwd())) if resolved.is_relative_to(Path.cwd()) else text
    except (OSError, ValueError):
        return text


def restore_or_rebuild(path: str | Path, stage: str | None) -> str:
    """The fix for a broken file a stage wrote: DVC's copy, else the stage again."""
    rebuild = f"rerun `kedro run --pipelines {stage}`" if stage else "rerun the stage that writes it"
    return f"restore it with `dvc checkout {shown_path(path)}` (or `dvc pull`) if DVC tracks it, or {rebuild}"


def user_error_in(error: BaseException | None) -> UserError | None:
    """The :class:`UserError` ``error`` is or was caused by (Kedro wraps a dataset's errors, pluggy a hook's)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, UserError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def short_message(error: UserError) -> str:
    lines = str(error).splitlines() or [type(error).__name__]
    if len(lines) > MAX_MESSAGE_LINES:
        lines = [*lines[: MAX_MESSAGE_LINES - 1], f"  ... ({len(lines) - MAX_MESSAGE_LINES + 1} more lines)"]
    return "Error: " + "\n".join(lines)


def install_short_errors() -> None:
    """Report an uncaught :class:`UserError` as :func:`short_message` (once installed, idempotent).

    It wraps whatever ``sys.excepthook`` is current (Rich's, which Kedro's console logging installs), so every
    other exception keeps its traceback, and so does this one with ``SSTKD_TRACEBACK=1``.
    """
    if getattr(sys.excepthook, "sstkd_short_errors", False):
        return
    previous = sys.excepthook

    def excepthook(kind, value, traceback):
        found = user_error_in(value)
        with_traceback = os.environ.get(TRACEBACK_VARIABLE, "") not in ("", "0")
        if found is None or with_traceback:
            previous(kind, value, traceback)
        if found is not None:
            hint = "" if with_traceback else f"\n({TRACEBACK_VARIABLE}=1 shows the traceback)"
            sys.stderr.write(short_message(found) + hint + "\n")
            sys.stderr.flush()

    excepthook.sstkd_short_errors = True
    sys.excepthook = excepthook
