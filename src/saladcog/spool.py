"""Files already on this machine, lent to the runner through a one-time handle.

A process beside the Cog server that holds a caller's file on disk (the batch worker's
downloads, the front door's uploads) lends it with `lend(path, name)`: the file moves into the
spool directory under a fresh 256-bit token (a rename on the same file system: nothing is
copied) and the runner is sent the handle `saladcog-spool:<token>/<name>`. `saladcog.inputs`
opens the file in place. The handle names no path: a caller who sends one needs a token that
exists only while the lender's prediction runs, and a value that is not a well-formed handle to
an existing spooled file is refused like any other string. The file is deleted when the block
ends, however it ends.

    SALADCOG_SPOOL_DIR   the spool directory (default <temp dir>/saladcog-spool, mode 0700);
                         the lender and the Cog server's worker must see the same one.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import stat
import tempfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

SCHEME = "saladcog-spool:"
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")
_DATA = "data"
_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,8}")


def _data_name(name: str) -> str:
    """The spooled file's name: "data" plus the caller's extension (FFmpeg guesses a few
    formats by it)."""
    suffix = os.path.splitext(name)[1]
    return _DATA + (suffix if _SUFFIX.fullmatch(suffix) else "")


def spool_dir() -> Path:
    folder = Path(os.environ.get("SALADCOG_SPOOL_DIR") or Path(tempfile.gettempdir()) / "saladcog-spool")
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


def is_handle(value: object) -> bool:
    return isinstance(value, str) and value.startswith(SCHEME)


@contextlib.contextmanager
def lend(path: str | os.PathLike, name: str) -> Iterator[str]:
    """Move `path` into the spool and yield its handle; the file is gone when the block ends.
    `name` is how messages call the file (the caller's own file name)."""
    token = secrets.token_urlsafe(32)
    folder = spool_dir() / token
    folder.mkdir(mode=0o700)
    try:
        shutil.move(os.fspath(path), folder / _data_name(name))  # a rename where the file system allows
        yield f"{SCHEME}{token}/{urllib.parse.quote(name, safe='')}"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def resolve(handle: str) -> tuple[Path, str] | None:
    """(the spooled file, the caller's name for it), or None when `handle` is not a handle to a
    file in the spool right now."""
    if not is_handle(handle):
        return None
    token, _, quoted_name = handle[len(SCHEME):].partition("/")
    if not _TOKEN.fullmatch(token):
        return None
    name = urllib.parse.unquote(quoted_name) or "file"
    path = spool_dir() / token / _data_name(name)
    try:
        if not stat.S_ISREG(path.lstat().st_mode):
            return None
    except OSError:
        return None
    return path, name
