"""Files the front door has received, handed to the runner without a second copy on disk.

Starlette spools an uploaded file into an anonymous temporary file (no name anyone could
open). The door gives the runner a one-time handle to that open file: `saladcog-upload:<token>/
<file name>`, where the token (256 random bits) names a link in a private directory (mode 0700,
this user's) to the door's open file descriptor. The runner, in the same container and as the
same user, opens the link and removes it in one step (`claim`), so the handle works once; the
bytes are read where the door wrote them. Nothing a caller could name reaches a file: the
runner resolves handles only inside the private directory, and a token it was not given
matches nothing. The door removes the link after the prediction, however it ended, and closing
its upload frees the file.

Environment: SALADCOG_UPLOAD_DIR, the private directory (default: <tmp>/saladcog-uploads-<uid>);
the door and the Cog server must see the same value (they run in one container).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, unquote

SCHEME = "saladcog-upload:"
_HANDLE = re.compile(r"saladcog-upload:([A-Za-z0-9_-]{43})/(.{1,200})")


class HandoffError(ValueError):
    """A handle that names no upload (already used, or never issued)."""


def private_dir() -> Path:
    """The directory of upload links: created 0700 when missing, refused when another user
    owns it or others can write to it."""
    path = Path(os.environ.get("SALADCOG_UPLOAD_DIR") or Path(tempfile.gettempdir()) / f"saladcog-uploads-{os.getuid()}")
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.lstat()
    if info.st_uid != os.getuid() or info.st_mode & 0o077 or path.is_symlink():
        raise PermissionError(f"{path} must be a directory of this user's with mode 0700 (SALADCOG_UPLOAD_DIR)")
    return path


def issue(fd: int, filename: str) -> tuple[str, Path]:
    """(handle for the runner, the link to remove afterwards) for this process's open file `fd`."""
    token = secrets.token_urlsafe(32)
    link = private_dir() / token
    os.symlink(f"/proc/{os.getpid()}/fd/{fd}", link)
    return f"{SCHEME}{token}/{quote(filename, safe='')}", link


def claim(handle: str) -> tuple[int, str]:
    """(open file descriptor, the caller's file name) for a handle the door issued; works once."""
    match = _HANDLE.fullmatch(handle)
    if not match:
        raise HandoffError("the upload handle is malformed")
    link = private_dir() / match[1]
    try:
        fd = os.open(link, os.O_RDONLY)
    except OSError:
        raise HandoffError("the upload is gone: its request ended or it was already read") from None
    link.unlink(missing_ok=True)
    return fd, unquote(match[2])


@contextlib.contextmanager
def lend(path: str | os.PathLike, filename: str) -> Iterator[str]:
    """The same one-time handle for a file on disk (the batch worker's downloads): yields the
    handle while `path` stays open here; the link is gone when the block ends."""
    fd = os.open(path, os.O_RDONLY)
    link = None
    try:
        handle, link = issue(fd, filename)
        yield handle
    finally:
        if link is not None:
            link.unlink(missing_ok=True)
        os.close(fd)
