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
    SALADCOG_FETCH_ALLOW_NETWORKS  CIDRs a URL may reach besides the public internet (default
                               none: loopback, link-local, private and other special addresses
                               are refused before any connection; addresses.py)
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import functools
import ipaddress
import mimetypes
import os
import re
import socket
import ssl
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import httpcore
import httpx

from saladcog import addresses, handoff

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
    # Networks a URL may reach besides the public internet (addresses.py).
    allowed_networks: tuple[addresses.Network, ...] = ()

    @classmethod
    def from_env(cls) -> Limits:
        return cls(
            max_bytes=int(os.environ.get("SALADCOG_MAX_INPUT_BYTES") or DEFAULT_MAX_INPUT_BYTES),
            fetch_seconds=float(os.environ.get("SALADCOG_FETCH_TIMEOUT") or DEFAULT_FETCH_TIMEOUT_S),
            allowed_networks=addresses.parse_networks(os.environ.get(addresses.ALLOW_ENV, "")),
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
        try:
            url = httpx.URL(self.source)
        except httpx.InvalidURL:
            return "the URL given as " + noun
        return str(url.copy_with(username=None, password=None, query=None, fragment=None))

    def suffix(self) -> str:
        """A file name extension for the temporary copy (FFmpeg guesses some formats by it)."""
        if self.is_upload:
            media_type = self.source[5:].split(",", 1)[0].split(";", 1)[0]
            return (mimetypes.guess_extension(media_type) or "") if media_type else ""
        try:
            ext = os.path.splitext(httpx.URL(self.source).path)[1]
        except httpx.InvalidURL:
            return ""
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
                download(value.source, out, limits, name)
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


def download(url: str, out, limits: Limits, name: str, network: httpcore.NetworkBackend | None = None) -> None:
    """Write the body of `url` to `out`, within the byte cap and the total deadline, from
    allowed addresses only (`network`: what opens connections to checked addresses).

    httpx follows up to MAX_REDIRECTS redirects and streams the body as it arrives; every
    connection, on the first request and on each redirect hop, goes through `_CheckedNetwork`.
    The raw bytes are counted (identity encoding is asked for), so the bytes counted are the
    bytes written. The run() thread blocks only in socket calls, which a cancel interrupts.
    """
    try:
        if not httpx.URL(url).host:
            raise InputError(f"could not fetch {name}: the URL has no host")
    except httpx.InvalidURL as e:
        raise InputError(f"could not fetch {name}: it is not a valid URL ({e})") from None
    deadline = time.monotonic() + limits.fetch_seconds
    checked = _CheckedNetwork(limits.allowed_networks, deadline, network or httpcore.SyncBackend())
    headers = {"User-Agent": os.environ.get("COG_USER_AGENT") or "saladcog", "Accept-Encoding": "identity"}
    received = 0
    length = None
    try:
        with httpx.Client(
            transport=_CheckedTransport(checked),
            headers=headers,
            timeout=min(STALL_TIMEOUT_S, limits.fetch_seconds),
            follow_redirects=True,
            max_redirects=MAX_REDIRECTS,
            trust_env=False,  # no proxy from the environment: the address checked is the one reached
        ) as client, client.stream("GET", url) as response:
            if response.status_code >= 300:
                raise InputError(
                    f"could not fetch {name}: the server answered HTTP {response.status_code} "
                    f"{response.reason_phrase}".rstrip()
                )
            if (length := _content_length(response)) is not None and length > limits.max_bytes:
                raise _too_large(name, limits)
            for chunk in response.iter_raw():
                received += len(chunk)
                if received > limits.max_bytes:
                    raise _too_large(name, limits)
                if time.monotonic() >= deadline:
                    raise _too_slow(name, limits, received)
                out.write(chunk)
    except AddressRefused:
        raise InputError(f"could not fetch {name}: its address is not allowed ({addresses.ALLOW_ENV})") from None
    except httpx.TimeoutException as e:
        if time.monotonic() >= deadline:  # each socket call was given only what was left
            raise _too_slow(name, limits, received) from None
        if isinstance(e, httpx.ConnectTimeout):
            raise InputError(f"could not fetch {name}: no connection within {STALL_TIMEOUT_S:g} s") from None
        raise InputError(
            f"could not fetch {name}: the server sent nothing for {STALL_TIMEOUT_S:g} s "
            f"({received:,} bytes received)"
        ) from None
    except httpx.TooManyRedirects:
        raise InputError(f"could not fetch {name}: more than {MAX_REDIRECTS} redirects") from None
    except httpx.UnsupportedProtocol:  # the URL sent is http(s): a redirect led elsewhere
        raise InputError(f"could not fetch {name}: it redirects to something not an http(s) URL") from None
    except httpx.RemoteProtocolError as e:
        if length is not None and received < length:
            raise InputError(
                f"could not fetch {name}: the connection closed after {received:,} of {length:,} bytes"
            ) from None
        raise InputError(f"could not fetch {name}: {e}") from None
    except (httpx.HTTPError, httpx.InvalidURL, OSError) as e:
        raise InputError(f"could not fetch {name}: {e}") from None


def _content_length(response: httpx.Response) -> int | None:
    try:
        return int(response.headers["Content-Length"])
    except (KeyError, ValueError):
        return None


def checked_transport(deadline: float, limits: Limits) -> httpx.BaseTransport:
    """An httpx transport that connects only to allowed addresses (as `download` does), every
    socket call held to `deadline`: for other fetchers of caller-named URLs (the batch worker)."""
    return _CheckedTransport(_CheckedNetwork(limits.allowed_networks, deadline, httpcore.SyncBackend()))


class AddressRefused(Exception):
    """A connection to an address that is neither public nor allowed was about to be opened."""


class _CheckedNetwork(httpcore.NetworkBackend):
    """Opens each connection to an address it has checked: resolves the host once, refuses it
    unless every address is allowed (addresses.is_allowed), then connects to those addresses,
    not to the name, so no second lookup can change them. TLS still verifies the name (httpcore
    hands it to start_tls as the server name). Every socket call is held to the deadline."""

    def __init__(self, allowed: tuple[addresses.Network, ...], deadline: float, network: httpcore.NetworkBackend):
        self.allowed = allowed
        self.deadline = deadline
        self.network = network

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        if not 0 < port < 65536:  # getaddrinfo would take 99999 for 34463
            raise httpcore.ConnectError(f"port {port} is not a TCP port")
        try:
            found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as e:  # UnicodeError: a name IDNA cannot encode
            raise httpcore.ConnectError(f"cannot resolve {host}: {getattr(e, 'strerror', None) or e}") from None
        ips = list(dict.fromkeys(ipaddress.ip_address(sockaddr[0]) for *_, sockaddr in found))
        if not all(addresses.is_allowed(ip, self.allowed) for ip in ips):
            raise AddressRefused(host)
        error: Exception = httpcore.ConnectError(f"no address for {host}")
        for ip in ips:
            try:
                stream = self.network.connect_tcp(
                    str(ip), port, _until(self.deadline, timeout), local_address, socket_options
                )
            except httpcore.ConnectError as e:  # the next address may answer
                error = e
                continue
            return _DeadlineStream(stream, self.deadline)
        raise error


def _until(deadline: float, timeout: float | None) -> float:
    """`timeout`, shortened to what is left before `deadline` (a little above 0 when none is)."""
    left = max(deadline - time.monotonic(), 1e-3)
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose reads and writes wait no longer than the fetch's deadline."""

    def __init__(self, stream: httpcore.NetworkStream, deadline: float):
        self.stream = stream
        self.deadline = deadline

    def read(self, max_bytes, timeout=None):
        return self.stream.read(max_bytes, _until(self.deadline, timeout))

    def write(self, buffer, timeout=None):
        self.stream.write(buffer, _until(self.deadline, timeout))

    def close(self):
        self.stream.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None):
        tls = self.stream.start_tls(ssl_context, server_hostname, _until(self.deadline, timeout))
        return _DeadlineStream(tls, self.deadline)

    def get_extra_info(self, info):
        return self.stream.get_extra_info(info)


class _CheckedTransport(httpx.HTTPTransport):
    """httpx's own transport (its exception mapping and streaming), with connections opened by
    `_CheckedNetwork`. httpx 0.28 takes no network backend (encode/httpx#3749, open, would add
    one), so its connection pool is replaced by one that has it; the check below fails loudly if
    httpx stops keeping the pool there (tests/test_fetch.py would too: nothing is recorded)."""

    def __init__(self, network: _CheckedNetwork):
        ssl_context = _ssl_context(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
        super().__init__(verify=ssl_context, trust_env=False)
        if not isinstance(getattr(self, "_pool", None), httpcore.ConnectionPool):
            raise RuntimeError("httpx.HTTPTransport no longer keeps an httpcore pool in _pool")
        self._pool.close()
        self._pool = httpcore.ConnectionPool(ssl_context=ssl_context, network_backend=network)


@functools.lru_cache(maxsize=1)
def _ssl_context(ca_file: str | None, ca_dir: str | None) -> ssl.SSLContext:
    """httpx's default TLS context, which trusts certifi's CAs or those SSL_CERT_FILE or
    SSL_CERT_DIR (the arguments, so a change makes a new one) name. Made once: loading the CAs
    takes ~40 ms, 30 times a whole 16 KB fetch from loopback (bench/fetch.py)."""
    return httpx.create_ssl_context()
