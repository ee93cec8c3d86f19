"""Where a URL input may be fetched from (saladcog.inputs with saladcog.addresses), in process.

The fetcher opens its connections through `Recording`, the real httpcore network backend that
also writes down every address it is asked to connect to and never connects to one outside
loopback, so no packet leaves the machine whatever the code under test does. Files come from
real HTTP servers on 127.0.0.1 and [::1]."""

from __future__ import annotations

import datetime
import http.server
import io
import ipaddress
import socket
import ssl
import threading

import httpcore
import pytest

from saladcog import addresses
from saladcog.inputs import InputError, Limits, download

BODY = b"RIFF" + bytes(range(256)) * 64
LOOPBACK_V4 = Limits(allowed_networks=addresses.parse_networks("127.0.0.0/8"))
LOOPBACK_BOTH = Limits(allowed_networks=addresses.parse_networks("127.0.0.0/8, ::1/128"))


class Recording(httpcore.NetworkBackend):
    """httpcore's own backend, writing down each (host, port) it is asked to connect to and
    refusing (without a packet) any host that is not a loopback address."""

    def __init__(self):
        self.connects: list[tuple[str, int]] = []
        self.network = httpcore.SyncBackend()

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        self.connects.append((host, port))
        if not is_loopback(host):
            raise httpcore.ConnectError(f"test: not connecting to {host}")
        return self.network.connect_tcp(host, port, timeout, local_address, socket_options)


def is_loopback(host: str) -> bool:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False  # a name: the fetcher is meant to connect to addresses
    return (getattr(ip, "ipv4_mapped", None) or ip).is_loopback


class Files(http.server.BaseHTTPRequestHandler):
    """/clip.wav: BODY; /to?<url>: a 302 to <url>."""

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        route, _, query = self.path.partition("?")
        if route == "/to":
            self.send_response(302)
            self.send_header("Location", query)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif route == "/clip.wav":
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY)
        else:
            self.send_error(404)


class FilesV6(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6


def serve(server: http.server.HTTPServer):
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


@pytest.fixture(scope="module")
def v4():
    """Port of a file server on 127.0.0.1 (the same port on [::1] would be another server)."""
    server, thread = serve(http.server.ThreadingHTTPServer(("127.0.0.1", 0), Files))
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture(scope="module")
def v6():
    server, thread = serve(FilesV6(("::1", 0), Files))
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join(5)


def fetch(url: str, limits: Limits = Limits(), network: Recording | None = None) -> bytes:
    out = io.BytesIO()
    download(url, out, limits, url, network=network or Recording())
    return out.getvalue()


def refusal(url: str) -> str:
    return f"could not fetch {url}: its address is not allowed (SALADCOG_FETCH_ALLOW_NETWORKS)"


@pytest.mark.parametrize("host", [
    "169.254.169.254", "169.254.170.2", "2852039166", "0xa9fea9fe",  # cloud metadata, also as integers
    "10.0.0.1", "172.16.0.1", "192.168.1.1", "100.64.0.1",  # RFC 1918, CGNAT
    "127.0.0.1", "localhost", "0.0.0.0", "224.0.0.1", "240.0.0.1", "255.255.255.255",
    "[::1]", "[::]", "[fd00::1]", "[fe80::1]", "[fec0::1]", "[ff02::1]", "[ff0e::1]",
    "[::ffff:169.254.169.254]", "[::ffff:127.0.0.1]", "[::127.0.0.1]",  # IPv4-mapped and -compatible
    "[64:ff9b::a9fe:a9fe]", "[2002:a9fe:a9fe::1]", "[64:ff9b::a00:1]",  # NAT64 and 6to4 of them
])
def test_a_non_public_address_is_refused_before_any_connection(host):
    url = f"http://{host}/latest/meta-data/"
    recording = Recording()
    with pytest.raises(InputError) as refused:
        fetch(url, network=recording)
    assert str(refused.value) == refusal(url)
    assert recording.connects == []


def test_a_redirect_to_the_metadata_service_is_refused_at_the_hop(v4, v6):
    """The first hop is allowed (loopback is on the list), the second is not; the message names
    the URL as sent and nothing of where it led."""
    for target in ("http://169.254.169.254/latest/meta-data/", f"http://[::1]:{v6}/clip.wav",
                   "http://[::ffff:a9fe:a9fe]/"):
        url = f"http://127.0.0.1:{v4}/to?{target}"
        recording = Recording()
        with pytest.raises(InputError) as refused:
            fetch(url, LOOPBACK_V4, recording)
        assert str(refused.value) == refusal(url)
        assert recording.connects == [("127.0.0.1", v4)]


def test_the_allow_list_lets_a_loopback_file_through(v4):
    recording = Recording()
    assert fetch(f"http://127.0.0.1:{v4}/clip.wav", LOOPBACK_V4, recording) == BODY
    assert recording.connects == [("127.0.0.1", v4)]
    # An allowed redirect is followed (the connection to the same server may be reused).
    assert fetch(f"http://127.0.0.1:{v4}/to?/clip.wav", LOOPBACK_V4) == BODY


def test_ipv6_literals_reach_the_host_they_name(v4, v6):
    assert fetch(f"http://[::1]:{v6}/clip.wav", LOOPBACK_BOTH) == BODY
    recording = Recording()
    assert fetch(f"http://[::ffff:127.0.0.1]:{v4}/clip.wav", LOOPBACK_V4, recording) == BODY
    assert [(ipaddress.ip_address(host), port) for host, port in recording.connects] == [
        (ipaddress.ip_address("::ffff:127.0.0.1"), v4)]


def test_a_name_is_resolved_once_and_the_checked_address_connected_to(v4):
    """`localhost` is refused by default; allowed, the backend is handed addresses, never the name."""
    url = f"http://localhost:{v4}/clip.wav"
    recording = Recording()
    with pytest.raises(InputError, match="its address is not allowed"):
        fetch(url, network=recording)
    assert recording.connects == []
    assert fetch(url, LOOPBACK_BOTH, recording) == BODY
    assert recording.connects and all(is_loopback(host) for host, _ in recording.connects)


def test_a_bad_allow_list_is_named():
    with pytest.raises(ValueError, match="SALADCOG_FETCH_ALLOW_NETWORKS: 'intranet' is not a network"):
        addresses.parse_networks("10.0.0.0/8, intranet")


def certificate_for_localhost(folder) -> tuple:
    """(CA file, certificate file, key file): a test CA and a certificate it signs for the
    name `localhost` only (no IP address in it)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    week = datetime.timedelta(days=7)

    def issue(subject, key, issuer, issuer_key, extensions):
        builder = x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
        builder = builder.public_key(key.public_key()).serial_number(x509.random_serial_number())
        builder = builder.not_valid_before(now - week).not_valid_after(now + week)
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "saladcog test CA")])
    ca = issue(ca_name, ca_key, ca_name, ca_key, [(x509.BasicConstraints(ca=True, path_length=None), True)])
    leaf = issue(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]), key, ca_name, ca_key,
                 [(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)])
    files = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    files[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    files[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return files


def test_tls_is_verified_on_the_name_while_connecting_to_the_address(tmp_path, monkeypatch):
    """The connection goes to a checked address, the TLS handshake names `localhost` (SNI) and
    the certificate is checked against it: the same server by its address fails verification."""
    ca_file, cert_file, key_file = certificate_for_localhost(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    names: list[str | None] = []
    context.sni_callback = lambda sock, name, ctx: names.append(name)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Files)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    port = server.server_address[1]
    serve(server)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))  # httpx's default context trusts it
    try:
        recording = Recording()
        assert fetch(f"https://localhost:{port}/clip.wav", LOOPBACK_BOTH, recording) == BODY
        assert all(is_loopback(host) for host, _ in recording.connects)
        assert names[-1] == "localhost"
        with pytest.raises(InputError, match="CERTIFICATE_VERIFY_FAILED"):
            fetch(f"https://127.0.0.1:{port}/clip.wav", LOOPBACK_BOTH)
    finally:
        server.shutdown()
        server.server_close()


def test_what_cannot_be_a_url_is_named_and_nothing_is_connected_to():
    recording = Recording()
    with pytest.raises(InputError, match="^could not fetch http:///talk.wav: the URL has no host$"):
        fetch("http:///talk.wav", network=recording)
    with pytest.raises(InputError, match="port 99999 is not a TCP port"):  # not 99999 % 65536
        fetch("http://127.0.0.1:99999/talk.wav", LOOPBACK_V4, recording)
    assert recording.connects == []


def test_a_malformed_url_is_named_and_refused():
    from saladcog.inputs import SentFile, fetched

    with pytest.raises(InputError, match="not a valid URL"):
        with fetched(SentFile("http://[::1/talk.wav"), "audio"):
            pass
