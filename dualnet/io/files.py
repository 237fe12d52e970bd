"""Reading and writing files safely: inputs may come from anywhere, outputs must never be
half-written or land on something the user wants to keep.

Reading (`open_regular`, `read_limited`): only regular files — a FIFO, a device or a
directory is refused at once with E-IO (opening never blocks), and a size is checked before
anything is read.

Writing (`atomic_write`, `temporary_directory`): the bytes go to a temporary file in the
target's directory, which then replaces the target, so a failed write leaves neither a
partial file nor a damaged old one. Temporary names are short and recognisable,
`.dualnet-tmp-<pid>-<random>`, whatever the target's name (a long target name cannot push
them past the file system's 255-byte limit); they are removed on every exit path Python
sees, and ones left by a killed run — whose process is gone, or older than a day — are
removed by the next write into the same directory. No write replaces a `.dnet` file, or one
of the files the command read (`protect`) — but `dualnet fmt`'s rewrite of a source.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import stat
import time
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from dualnet.diagnostics import DualnetError, error, whole_file

PathLike = str | os.PathLike
TEMP_PREFIX = ".dualnet-tmp-"
_TEMP_NAME = re.compile(re.escape(TEMP_PREFIX) + r"(\d+)-[0-9a-f]+(\.tmp)?")
STALE_AFTER_S = 24 * 3600
_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


# ---------------------------------------------------------------- reading


def open_regular(path: PathLike, name: str | None = None) -> BinaryIO:
    """`path` opened for binary reading, if it is a regular file; else E-IO (naming it
    `name`, by default the path). Opening does not block (a FIFO without a writer would),
    and the check is on the opened file itself."""
    name = os.fspath(path) if name is None else name
    path = os.fspath(path)
    try:
        fd = os.open(
            path,
            os.O_RDONLY
            | getattr(os, "O_NONBLOCK", 0)
            | getattr(os, "O_NOCTTY", 0)
            | getattr(os, "O_CLOEXEC", 0),
        )
    except OSError as exc:
        raise io_error("read", name, exc) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = next((what for test, what in _KINDS if test(mode)), "not a regular file")
            raise error(
                "E-IO",
                f"cannot read {name}: it is {kind}",
                whole_file(name),
                notes=[] if stat.S_ISDIR(mode) else ["dualnet reads regular files only"],
            )
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_limited(path: PathLike, limit: int, what: str, name: str | None = None) -> bytes:
    """The content of the regular file `path` (named `name` in errors), refused (E-LIMIT)
    when larger than `limit` bytes — checked before reading, and again while reading (a
    file may grow)."""
    name = os.fspath(path) if name is None else name
    with open_regular(path, name) as f:
        try:
            if os.fstat(f.fileno()).st_size > limit:
                raise too_large(name, what, limit)
            data = f.read(limit + 1)
        except OSError as exc:
            raise io_error("read", name, exc) from None
    if len(data) > limit:
        raise too_large(name, what, limit)
    return data


def too_large(name: str, what: str, limit: int) -> DualnetError:
    return error(
        "E-LIMIT", f"{name} is larger than the {_bytes(limit)} a {what} may have", whole_file(name)
    )


def _bytes(n: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n:,} bytes"


# ---------------------------------------------------------------- writing


def make_directory(path: PathLike) -> None:
    """Create an output directory (and its parents) if missing; E-IO when impossible."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise io_error("create the directory", os.fspath(path), exc) from None


def check_output(path: PathLike, protect: Iterable[PathLike] = ()) -> None:
    """E-IO unless `path` may be written: never a `.dnet` file (a source), never one of the
    files `protect` lists (the command's own inputs), never a directory."""
    name = os.fspath(path)
    if name.endswith(".dnet"):
        raise error(
            "E-IO",
            f"refusing to overwrite {name}: it is a .dnet source"
            if os.path.exists(name)
            else f"refusing to write {name}: dualnet never writes .dnet files",
            whole_file(name),
            notes=["choose another output name"],
        )
    if os.path.isdir(name):
        raise error("E-IO", f"cannot write {name}: it is a directory", whole_file(name))
    for source in protect:
        with contextlib.suppress(OSError):
            if os.path.samefile(name, source):
                raise error(
                    "E-IO",
                    f"refusing to overwrite {name}: it is one of this "
                    f"command's inputs ({os.fspath(source)})",
                    whole_file(name),
                    notes=["choose another output name"],
                )


def atomic_write(
    path: PathLike, data: bytes | list, protect: Iterable[PathLike] = (), *, source: bool = False
) -> None:
    """Write `data` (bytes, or a list of bytes-like pieces written in turn) to `path`
    through a temporary file in the same directory and `os.replace`; on failure remove the
    temporary file and raise E-IO (the old file, if any, is untouched).
    `check_output(path, protect)` first, unless `source`: `dualnet fmt` rewriting a .dnet
    file it has just read."""
    path = os.fspath(path)
    if not source:
        check_output(path, protect)
    directory = os.path.dirname(os.path.abspath(path))
    mode = _new_file_mode(path)
    remove_stale(directory)
    try:
        fd, tmp = _temp_file(directory)
    except OSError as exc:
        raise io_error("write", path, exc) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.writelines([data] if isinstance(data, bytes) else data)
            f.flush()
            os.fsync(f.fileno())
            os.chmod(tmp, mode)  # created 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise io_error("write", path, exc) from None
        raise


@contextlib.contextmanager
def temporary_directory(parent: PathLike | None = None) -> Iterator[str]:
    """A fresh directory with a temporary name in `parent` (default: the system's temporary
    directory), removed with its content when the block ends, however it ends."""
    import tempfile

    parent = os.fspath(parent) if parent is not None else tempfile.gettempdir()
    remove_stale(parent)
    path = os.path.join(parent, _temp_name(""))
    try:
        os.mkdir(path, 0o700)
    except OSError as exc:
        raise io_error("create the directory", path, exc) from None
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def remove_stale(directory: str) -> None:
    """Remove the temporary files and directories of dualnet runs that were killed before
    they could: their process is gone (or the entry is older than a day)."""
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    now = time.time()
    for entry in entries:
        match = _TEMP_NAME.fullmatch(entry.name)
        if match is None:
            continue
        try:
            old = now - entry.stat(follow_symlinks=False).st_mtime > STALE_AFTER_S
            if not (old or not _running(int(match.group(1)))):
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                os.unlink(entry.path)
        except OSError:
            continue  # gone already, or not ours to remove


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # someone else's process: assume alive
    return True


def _temp_name(suffix: str) -> str:
    return f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(6)}{suffix}"


def _temp_file(directory: str) -> tuple[int, str]:
    """A new file `.dualnet-tmp-<pid>-<random>.tmp` in `directory`, opened for writing."""
    flags = (
        os.O_WRONLY
        | os.O_CREAT
        | os.O_EXCL
        | getattr(os, "O_CLOEXEC", 0)
        | getattr(os, "O_BINARY", 0)
    )
    for _ in range(100):
        path = os.path.join(directory, _temp_name(".tmp"))
        try:
            return os.open(path, flags, 0o600), path
        except FileExistsError:
            continue
    raise FileExistsError("no free temporary file name")


def _new_file_mode(path: str) -> int:
    """The permission bits for the written file: the old file's, or 0666 minus the umask."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        pass
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def io_error(verb: str, path: str, exc: OSError) -> DualnetError:
    if isinstance(exc, IsADirectoryError) or (verb == "read" and os.path.isdir(path)):
        reason = "it is a directory"
    else:
        reason = exc.strerror or str(exc)
    return error("E-IO", f"cannot {verb} {path}: {reason}", whole_file(path))
