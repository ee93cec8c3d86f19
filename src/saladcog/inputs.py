"""Files that callers send as inputs: taken from Cog as sent, fetched by saladcog within limits.

Cog 0.23.1 hands a `Path` input to a runner in one of two ways. A string that starts with
http://, https:// or data: goes through `cog.types.Path.validate`, and coglet's worker downloads
the resulting URLPath to a temporary file before run() is called: no size cap, no total
deadline, a cancel does not stop it, and a failed download leaves its partial file behind. Any
other string reaches run() unchanged, as a `str`: a path on the server, chosen by the caller.

`take_over_cog_paths()` (called once by predict.py, in the worker) makes `Path.validate` return
a `SentFile` that only records what was sent, so coglet has nothing to download. A runner then
opens each file input with `fetched()`, which writes it to a temporary file under the limits
below, deletes that file whatever happens, and refuses anything that is not a SentFile with
one message, whatever the string was (so it tells nothing about the server's files).

Limits, from the environment (README, "Limits and hostile input"):
    SALADCOG_MAX_INPUT_BYTES   largest input file, data URI or download (default 1 GB)
    SALADCOG_FETCH_TIMEOUT     seconds a URL download may take in all (default 300)
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import http.client
import mimetypes
import os
import re
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

from saladcog import handoff

DEFAULT_MAX_INPUT_BYTES = 1_000_000_000  # Salad's gateway accepts requests up to 1 GB
DEFAULT_FETCH_TIMEOUT_S = 300.0
# A server that sends nothing for this long fails the fetch; a cancel also lands within it.
STALL_TIMEOUT_S = 10.0
_CHUNK_BYTES = 1 << 16
MAX_REDIRECTS = 5
# Base64 is decoded this many characters at a time (a multiple of 4), so that a data URI's
# bytes never exist twice in memory.
_BASE64_CHUNK = 1 << 20


class InputError(ValueError):
    """An input file that cannot be taken; the message names it as the caller sent it."""


@dataclasses.dataclass(frozen=True)
class Limits:
    max_bytes: int = DEFAULT_MAX_INPUT_BYTES
    fetch_seconds: float = DEFAULT_FETCH_TIMEOUT_S

    @classmethod
    def from_env(cls) -> Limits:
        return cls(
            max_bytes=int(os.environ.get("SALADCOG_MAX_INPUT_BYTES") or DEFAULT_MAX_INPUT_BYTES),
            fetch_seconds=float(os.environ.get("SALADCOG_FETCH_TIMEOUT") or DEFAULT_FETCH_TIMEOUT_S),
        )


@dataclasses.dataclass(frozen=True)
class SentFile:
    """A file input as the caller sent it: a data URI or an http(s) URL, not yet read."""

    source: str

    @property
    def is_upload(self) -> bool:
        return self.source.startswith("data:")

    def describe(self, noun: str) -> str:
        """How error messages name it: the URL (without query or credentials, which may hold
        secrets), or "the uploaded <noun>" for a data URI."""
        if self.is_upload:
            return f"the uploaded {noun}"
        parts = urllib.parse.urlsplit(self.source)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}{parts.path}"

    def suffix(self) -> str:
        """A file name extension for the temporary copy (FFmpeg guesses some formats by it)."""
        if self.is_upload:
            media_type = self.source[5:].split(",", 1)[0].split(";", 1)[0]
            return (mimetypes.guess_extension(media_type) or "") if media_type else ""
        ext = os.path.splitext(urllib.parse.urlsplit(self.source).path)[1]
        return ext if re.fullmatch(r"\.[A-Za-z0-9]{1,8}", ext) else ""


@dataclasses.dataclass(frozen=True)
class Received:
    """A fetched input: its temporary file, and how messages name it."""

    path: Path
    name: str


# Cog's own Path.validate, kept for the values that are not URLs (module state: the take-over
# is once per process).
_cog_validate = None


def _validate(cls, value):
    if isinstance(value, SentFile):
        return value
    if isinstance(value, str) and value.startswith(("data:", "http://", "https://")):
        return SentFile(value)
    return _cog_validate(value)


def take_over_cog_paths() -> None:
    """Make Cog's `Path` inputs arrive in run() as `SentFile`s (see the module docstring).

    coglet looks `cog.types.Path.validate` up for every prediction, so replacing it once in
    the worker is enough; values that are not URLs keep Cog's own handling. This is the only
    way in: coglet 0.23.1 has no setting for it.
    """
    global _cog_validate
    import cog.types

    if _cog_validate is None:
        _cog_validate = cog.types.Path.validate
        cog.types.Path.validate = classmethod(_validate)


@contextlib.contextmanager
def fetched(value, noun: str = "audio", limits: Limits | None = None) -> Iterator[Received]:
    """`with fetched(audio, "audio") as sent:` the input in a temporary file at `sent.path`,
    deleted when the block ends, whether it succeeds, fails or is cancelled."""
    if isinstance(value, (str, os.PathLike)) and os.fspath(value).startswith(handoff.SCHEME):
        with _door_upload(os.fspath(value), noun) as received:
            yield received
        return
    if not isinstance(value, SentFile):
        raise InputError(
            f"{noun} must be sent as a data URI or an http(s) URL; "
            "names of files on the server are not accepted"
        )
    limits = limits or Limits.from_env()
    name = value.describe(noun)
    fd, temp_name = tempfile.mkstemp(prefix="saladcog-input-", suffix=value.suffix())
    path = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            if value.is_upload:
                _write_data_uri(value.source, out, limits, name)
            else:
                _download(value.source, out, limits, name)
        yield Received(path=path, name=name)
    finally:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def _door_upload(handle: str, noun: str) -> Iterator[Received]:
    """A file the front door received, read where the door spooled it (saladcog.handoff). coglet
    passes a string that is not a URL to run() as it is (a str or a Path)."""
    try:
        fd, filename = handoff.claim(handle)
    except handoff.HandoffError as e:
        raise InputError(f"the uploaded {noun}: {e}") from None
    try:
        yield Received(path=Path(f"/proc/self/fd/{fd}"), name=f"the uploaded file {filename}")
    finally:
        os.close(fd)


def _too_large(name: str, limits: Limits) -> InputError:
    return InputError(
        f"{name} is larger than {limits.max_bytes:,} bytes, the most this server accepts "
        "(SALADCOG_MAX_INPUT_BYTES)"
    )


def _too_slow(name: str, limits: Limits, received: int) -> InputError:
    return InputError(
        f"could not fetch {name}: it took longer than {limits.fetch_seconds:g} s "
        f"({received:,} bytes received; SALADCOG_FETCH_TIMEOUT)"
    )


def _write_data_uri(uri: str, out, limits: Limits, name: str) -> None:
    header, comma, payload = uri.partition(",")
    if not comma:
        raise InputError(f"{name} is not a valid data URI: it has no ',' before the data")
    if not header.endswith(";base64"):
        data = urllib.parse.unquote_to_bytes(payload)
        if len(data) > limits.max_bytes:
            raise _too_large(name, limits)
        out.write(data)
        return
    if len(payload) // 4 * 3 > limits.max_bytes + 2:
        raise _too_large(name, limits)
    for start in range(0, len(payload), _BASE64_CHUNK):
        try:
            out.write(base64.b64decode(payload[start : start + _BASE64_CHUNK], validate=True))
        except binascii.Error as e:
            raise InputError(f"{name} is not valid base64 ({e})") from None


def _download(url: str, out, limits: Limits, name: str) -> None:
    """Write the body of `url` to `out`, within the byte cap and the total deadline.

    The standard library's http.client, not the Cog SDK's requests: `read1` returns whatever
    has arrived, so the deadline and a cancel are checked between small reads even when a
    server trickles; requests/urllib3 block until a whole chunk has arrived. No
    Accept-Encoding is sent, so the bytes counted are the bytes written.
    """
    deadline = time.monotonic() + limits.fetch_seconds
    received = 0
    sock, response = _get(url, name, min(STALL_TIMEOUT_S, limits.fetch_seconds))
    try:
        if response.length is not None and response.length > limits.max_bytes:
            raise _too_large(name, limits)
        while chunk := response.read1(_CHUNK_BYTES):
            received += len(chunk)
            if received > limits.max_bytes:
                raise _too_large(name, limits)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _too_slow(name, limits, received)
            sock.settimeout(min(STALL_TIMEOUT_S, remaining))
            out.write(chunk)
        if response.length:  # Content-Length promised more than came
            raise InputError(
                f"could not fetch {name}: the connection closed after {received:,} of "
                f"{received + response.length:,} bytes"
            )
    except TimeoutError:
        if time.monotonic() >= deadline:  # the last read was given only what was left
            raise _too_slow(name, limits, received) from None
        raise InputError(
            f"could not fetch {name}: the server sent nothing for {STALL_TIMEOUT_S:g} s "
            f"({received:,} bytes received)"
        ) from None
    except (OSError, http.client.HTTPException) as e:
        raise InputError(f"could not fetch {name}: {e}") from None
    finally:
        response.close()
        sock.close()


def _get(url: str, name: str, timeout: float):
    """(socket, response) for a GET of `url`, following up to MAX_REDIRECTS redirects to
    http(s) URLs; an error status or a failure raises InputError."""
    headers = {"User-Agent": os.environ.get("COG_USER_AGENT") or "saladcog"}
    for _ in range(MAX_REDIRECTS + 1):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InputError(f"could not fetch {name}: it redirects to something not an http(s) URL")
        connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        connection = connection_class(parts.hostname, parts.port, timeout=timeout)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            connection.request("GET", target, headers=headers)
            # The socket, kept here: the connection lets go of it when the response says
            # "Connection: close", and the read loop sets its timeout.
            sock = connection.sock
            response = connection.getresponse()
        except TimeoutError:
            connection.close()
            raise InputError(
                f"could not fetch {name}: the server did not answer within {timeout:g} s"
            ) from None
        except (OSError, http.client.HTTPException) as e:
            connection.close()
            raise InputError(f"could not fetch {name}: {e}") from None
        if response.status < 300:
            return sock, response
        response.close()
        sock.close()
        location = response.getheader("Location")
        if response.status in (301, 302, 303, 307, 308) and location:
            url = urllib.parse.urljoin(url, location)
            continue
        raise InputError(
            f"could not fetch {name}: the server answered HTTP {response.status} {response.reason}".rstrip()
        )
    raise InputError(f"could not fetch {name}: more than {MAX_REDIRECTS} redirects")
