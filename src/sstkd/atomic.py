"""Writing files and folders so that readers see the old version or the new one, never half of either.

Every artifact the project writes goes through :func:`atomic_file` or :func:`replaced_directory`: the data is
written beside the target, flushed, and renamed over it in one step. A full disk, a crash or a kill mid-write
leaves the previous version in place, and a full disk is reported as such, naming the artifact.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sstkd.errors import UserError

_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}


class DiskFullError(UserError, OSError):
    """The disk (or quota) filled up while writing an artifact; the previous version was kept."""

    def __init__(self, *args):  # OSError's (errno, message)
        OSError.__init__(self, *args)


class ForeignFolderError(UserError, FileExistsError):
    """A writer was pointed at a folder that holds files it did not write; nothing was touched."""


def _default_permissions(path: Path, directory: bool) -> None:
    # mkstemp/mkdtemp create 0600/0700 entries; a published artifact gets the permissions a plain
    # open()/mkdir() would have given it (0666/0777 less the umask), so other users and tools can read it.
    umask = os.umask(0)
    os.umask(umask)
    path.chmod((0o777 if directory else 0o666) & ~umask)


def _is_disk_full(error: BaseException | None) -> bool:
    """An out-of-space error, also when a library (torch's zip writer) re-raised it as something else."""
    seen = 0
    while error is not None and seen < 8:
        if isinstance(error, OSError) and error.errno in _NO_SPACE:
            return True
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False


def _free_bytes(folder: Path) -> int:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return 1 << 62


@contextmanager
def reporting_full_disk(target: str | Path) -> Iterator[None]:
    """Re-raise a no-space error (numpy, torch, PIL, json...) as :class:`DiskFullError` naming ``target``."""
    try:
        yield
    except (OSError, RuntimeError) as error:
        # numpy reports a short write ("N requested and M written") with no errno: ask the file system.
        short_write = isinstance(error, OSError) and error.errno is None
        if _is_disk_full(error) or (short_write and _free_bytes(Path(target).parent) < 1 << 20):
            raise DiskFullError(errno.ENOSPC, f"disk full while writing {target}; the previous version (if any) "
                                              f"was kept. Free some space and run again") from error
        raise


@contextmanager
def atomic_file(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it is fsynced and renamed over ``target``.

    On any exception the temporary file is removed and ``target`` is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        with reporting_full_disk(target):
            yield temporary
            with temporary.open("rb+") as stream:
                os.fsync(stream.fileno())
        _default_permissions(temporary, directory=False)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_bytes_atomically(target: str | Path, data: bytes) -> None:
    with atomic_file(target) as temporary:
        temporary.write_bytes(data)


@contextmanager
def replaced_directory(target: str | Path, owner_file: str | None = None) -> Iterator[Path]:
    """Yield an empty staging folder beside ``target``; on success it replaces ``target`` by renames.

    On any exception the staging folder is removed and ``target`` is left as it was. With ``owner_file``, a
    non-empty ``target`` that lacks that file (the writer's own record) is someone else's folder: it raises
    :class:`ForeignFolderError` before anything is written, so a misconfigured path never deletes a user's files.
    """
    target = Path(target)
    if owner_file and target.is_dir() and any(target.iterdir()) and not (target / owner_file).is_file():
        found = ", ".join(sorted(p.name for p in target.iterdir())[:3])
        raise ForeignFolderError(f"refusing to replace {target}: it is not empty ({found}, ...) and holds no "
                                 f"{owner_file}, so this project did not write it. Point the entry at a new or "
                                 f"empty folder.")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        with reporting_full_disk(target):
            yield staging
        _default_permissions(staging, directory=True)
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            target.rename(old)
        staging.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
