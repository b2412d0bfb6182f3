"""The SSRF guard and the media downloader, against real HTTP(S) servers on 127.0.0.1."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from video_pipelines.errors import (
    BlockedDestinationError,
    FetchError,
    TransientFetchError,
    VideoPipelineError,
)
from video_pipelines.net import (
    AllowedHosts,
    fetch_to_file,
    parse_allowed_hosts,
    redact_url,
    resolve_destination,
)

PAYLOAD = bytes(range(256)) * 256  # 64 KiB
LARGE = b"\xab" * (2 * 1024 * 1024)
LOOPBACK = parse_allowed_hosts("127.0.0.1")


@dataclass
class Seen:
    hosts: list[str] = field(default_factory=list)
    sni: list[str | None] = field(default_factory=list)


class MediaHandler(BaseHTTPRequestHandler):
    server: MediaServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        all_headers = {"Content-Length": str(len(body)), **(headers or {})}
        for name, value in all_headers.items():
            if value:
                self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str) -> None:
        self._send(302, headers={"Location": location})

    def do_GET(self) -> None:
        self.server.seen.hosts.append(self.headers.get("Host", ""))
        path = urlsplit(self.path).path
        port = self.server.server_address[1]
        if path == "/bytes":
            self._send(200, PAYLOAD, {"Content-Type": "video/mp4"})
        elif path == "/missing":
            self._send(404, b"not here")
        elif path == "/unavailable":
            self._send(503, b"try later")
        elif path == "/busy":
            self._send(429, b"slow down")
        elif path == "/redirect":
            self._redirect("/bytes")
        elif path == "/redirect-localhost":
            self._redirect(f"http://localhost:{port}/bytes")
        elif path == "/redirect-other-loopback":
            self._redirect(f"http://127.0.0.2:{port}/bytes")
        elif path == "/redirect-metadata":
            self._redirect("http://169.254.169.254/latest/meta-data/iam/security-credentials/")
        elif path.startswith("/chain/"):
            hops = int(path.rsplit("/", 1)[1])
            self._redirect(f"/chain/{hops - 1}" if hops > 0 else "/bytes")
        elif path == "/large":
            self._send(200, LARGE)
        elif path == "/large-unsized":
            # HTTP/1.0 without Content-Length: the body ends when the connection closes.
            self._send(200, LARGE, {"Content-Length": ""})
        elif path == "/slow":
            time.sleep(1.0)
            self._send(200, PAYLOAD)
        else:
            self._send(500, b"unknown test path")


class MediaServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), MediaHandler)
        self.seen = Seen()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that give up (timeouts, size limits) break the pipe: expected here

    @property
    def port(self) -> int:
        return int(self.server_address[1])


def _serve(server: MediaServer) -> Iterator[MediaServer]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="module")
def media_server() -> Iterator[MediaServer]:
    yield from _serve(MediaServer())


def _issue_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a leaf certificate valid for DNS:localhost only (no IP address)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "video-pipelines test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = folder / "ca.pem", folder / "leaf.pem", folder / "leaf.key"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(leaf_cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_path, cert_path, key_path


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MediaServer, Path]]:
    """An HTTPS MediaServer on 127.0.0.1 whose certificate names only `localhost`; yields it and its CA."""
    ca_path, cert_path, key_path = _issue_certificates(tmp_path_factory.mktemp("tls"))
    server = MediaServer()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)

    def record_sni(_sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        server.seen.sni.append(name)

    context.sni_callback = record_sni
    # Handshake in the handler thread (on first read), not in the accept loop.
    server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    for running in _serve(server):
        yield running, ca_path


def _url(server: MediaServer, path: str, host: str = "127.0.0.1") -> str:
    scheme = "https" if isinstance(server.socket, ssl.SSLSocket) else "http"
    return f"{scheme}://{host}:{server.port}{path}"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- VIDEO_PIPELINES_ALLOWED_HOSTS ---------------------------------------------------------------


def test_parse_allowed_hosts_reads_hostnames_ips_and_cidrs_with_whitespace() -> None:
    allowed = parse_allowed_hosts(" Media.Internal. , 10.0.0.0/8,192.168.1.7 ,, ::1, [fd00::]/8 , *.cdn.test ")

    assert allowed.hostnames == frozenset({"media.internal"})
    assert allowed.domain_suffixes == frozenset({".cdn.test"})
    assert allowed.addresses == frozenset({ipaddress.ip_address("192.168.1.7"), ipaddress.ip_address("::1")})
    assert allowed.networks == (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))
    assert allowed.allows_hostname("MEDIA.internal")
    assert allowed.allows_hostname("a.cdn.test") and not allowed.allows_hostname("cdn.test")
    assert allowed.allows_address(ipaddress.ip_address("10.20.30.40"))
    assert allowed.allows_address(ipaddress.ip_address("fd12::1"))
    assert not allowed.allows_address(ipaddress.ip_address("192.168.1.8"))


@pytest.mark.parametrize("value", [None, "", " , ,"])
def test_parse_allowed_hosts_empty(value: str | None) -> None:
    assert parse_allowed_hosts(value) == AllowedHosts()


@pytest.mark.parametrize("entry", ["http://media.test", "localhost:8080", "10.0.0.0/33", "bad host", "a/b"])
def test_parse_allowed_hosts_refuses_malformed_entries(entry: str) -> None:
    with pytest.raises(VideoPipelineError, match="VIDEO_PIPELINES_ALLOWED_HOSTS"):
        parse_allowed_hosts(f"127.0.0.1,{entry}")


def test_allowed_hosts_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDEO_PIPELINES_ALLOWED_HOSTS", "localhost, 10.0.0.0/8")
    assert AllowedHosts.from_env() == parse_allowed_hosts("localhost,10.0.0.0/8")
    assert AllowedHosts.from_env({}) == AllowedHosts()


# --- resolve_destination ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "100.64.0.1",
        "169.254.10.10",
        "224.0.0.1",
        "0.0.0.0",
        "240.0.0.1",
        "[::1]",
        "[::]",
        "[fd00::1]",
        "[fe80::1]",
        "[ff02::1]",
        "[::ffff:127.0.0.1]",
        "[::ffff:10.0.0.1]",
    ],
)
def test_non_public_addresses_are_refused_by_default(host: str) -> None:
    with pytest.raises(BlockedDestinationError, match="not a public address") as caught:
        resolve_destination(f"http://{host}:8080/clip.mp4", AllowedHosts())
    assert host.strip("[]") in str(caught.value)
    assert "VIDEO_PIPELINES_ALLOWED_HOSTS" in str(caught.value)


@pytest.mark.parametrize("host", ["93.184.215.14", "[2606:4700:4700::1111]"])
def test_public_addresses_pass(host: str) -> None:
    destination = resolve_destination(f"https://{host}/a.mp4?sig=1", AllowedHosts())
    assert destination.ip == host.strip("[]")
    assert destination.port == 443
    assert destination.scheme == "https"


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/clip.mp4", "gopher://example.com/"])
def test_only_http_and_https_are_fetched(url: str, tmp_path: Path) -> None:
    with pytest.raises(BlockedDestinationError, match="only http and https"):
        resolve_destination(url, parse_allowed_hosts("0.0.0.0/0,::/0"))
    with pytest.raises(BlockedDestinationError):
        fetch_to_file(url, tmp_path / "out", allowed=AllowedHosts())
    assert _files_in(tmp_path) == []


# Metadata endpoints are allowed only by an entry naming their exact address: a broad CIDR
# (even 0.0.0.0/0) or an allowed hostname does not reach instance credentials.
@pytest.mark.parametrize(
    ("allowed", "url", "reachable"),
    [
        ("169.254.169.254", "http://169.254.169.254/latest/", True),
        ("169.254.169.254/32", "http://169.254.169.254/latest/", True),
        ("fd00:ec2::254", "http://[fd00:ec2::254]/latest/", True),
        ("0.0.0.0/0", "http://169.254.169.254/latest/", False),
        ("0.0.0.0/0", "http://[::ffff:169.254.169.254]/latest/", False),
        ("169.254.0.0/16", "http://169.254.169.254/latest/", False),
        ("169.254.0.0/16", "http://169.254.1.1/", True),
        ("::/0", "http://[fd00:ec2::254]/latest/", False),
        ("0.0.0.0/0", "http://10.0.0.1/", True),
        ("", "http://169.254.169.254/latest/", False),
    ],
)
def test_metadata_address_needs_its_exact_address_allowed(allowed: str, url: str, reachable: bool) -> None:
    hosts = parse_allowed_hosts(allowed)
    if reachable:
        assert resolve_destination(url, hosts).ip
    else:
        with pytest.raises(BlockedDestinationError, match="cloud metadata endpoint"):
            resolve_destination(url, hosts)


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Answers for made-up names; every other lookup goes to the real resolver."""
    answers: dict[str, list[str]] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host in answers:
            if not answers[host]:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            return [
                (socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))
                for ip in answers[host]
            ]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers


def test_an_allowed_hostname_does_not_unlock_the_metadata_address(fake_dns: dict[str, list[str]]) -> None:
    fake_dns["metadata.internal"] = ["169.254.169.254"]
    with pytest.raises(BlockedDestinationError, match=r"metadata\.internal resolves to 169\.254\.169\.254"):
        resolve_destination("http://metadata.internal/", parse_allowed_hosts("metadata.internal"))


def test_any_blocked_address_among_several_refuses(fake_dns: dict[str, list[str]]) -> None:
    fake_dns["mixed.test"] = ["93.184.215.14", "10.9.8.7"]
    with pytest.raises(BlockedDestinationError, match=r"mixed\.test resolves to 10\.9\.8\.7"):
        resolve_destination("http://mixed.test/a.mp4", AllowedHosts())
    destination = resolve_destination("http://mixed.test/a.mp4", parse_allowed_hosts("mixed.test"))
    assert destination.addresses == ("93.184.215.14", "10.9.8.7")


def test_wildcard_allows_subdomains_only(fake_dns: dict[str, list[str]]) -> None:
    fake_dns["edge.media.test"] = ["10.0.0.5"]
    fake_dns["media.test"] = ["10.0.0.6"]
    allowed = parse_allowed_hosts("*.media.test")
    assert resolve_destination("http://edge.media.test/x", allowed).ip == "10.0.0.5"
    with pytest.raises(BlockedDestinationError):
        resolve_destination("http://media.test/x", allowed)


def test_unknown_host_is_a_fetch_error(fake_dns: dict[str, list[str]]) -> None:
    fake_dns["nowhere.test"] = []
    with pytest.raises(FetchError, match="cannot resolve") as caught:
        resolve_destination("http://nowhere.test/x", AllowedHosts())
    assert not isinstance(caught.value, TransientFetchError)


def test_redact_url_keeps_only_scheme_host_port_and_path() -> None:
    url = "https://user:pw@bucket.s3.test:8443/videos/a.mp4?X-Amz-Signature=secret#frag"
    assert redact_url(url) == "https://bucket.s3.test:8443/videos/a.mp4"
    assert redact_url("http://[::1]/x?y=1") == "http://[::1]/x"
    assert redact_url(httpx.URL(url)) == "https://bucket.s3.test:8443/videos/a.mp4"
    assert redact_url("http://[::1/x") == "<invalid URL>"


def test_redacting_a_database_url_loads_no_http_client() -> None:
    """A local `submit` on PostgreSQL names its database in a warning: httpx (with click and rich) cost it 0.1 s."""
    code = (
        "import sys; from video_pipelines.net import redact_url; "
        "print(redact_url('postgresql://app:secret@db.internal:5432/videos'), 'httpx' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["postgresql://db.internal:5432/videos", "False"]


# --- fetch_to_file against a real server -------------------------------------------------------------


def test_loopback_is_refused_by_default(media_server: MediaServer, tmp_path: Path) -> None:
    requests_before = len(media_server.seen.hosts)
    with pytest.raises(BlockedDestinationError, match=r"127\.0\.0\.1"):
        fetch_to_file(_url(media_server, "/bytes"), tmp_path / "a.mp4", allowed=AllowedHosts())
    assert len(media_server.seen.hosts) == requests_before
    assert _files_in(tmp_path) == []


@pytest.mark.parametrize(
    ("allowed", "host"),
    [("127.0.0.1", "127.0.0.1"), ("127.0.0.0/8", "127.0.0.1"), ("localhost", "localhost")],
)
def test_fetch_when_allowed(media_server: MediaServer, tmp_path: Path, allowed: str, host: str) -> None:
    dest = tmp_path / "sub" / "a.mp4"
    written = fetch_to_file(f"http://{host}:{media_server.port}/bytes", dest, allowed=parse_allowed_hosts(allowed))
    assert written == len(PAYLOAD)
    assert dest.read_bytes() == PAYLOAD
    assert _files_in(dest.parent) == ["a.mp4"]


def test_connects_to_the_checked_ip_and_sends_the_original_host(
    media_server: MediaServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    looked_up: list[str] = []
    real = socket.getaddrinfo

    def recording_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        looked_up.append(str(host))
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", recording_getaddrinfo)
    fetch_to_file(
        _url(media_server, "/bytes", "localhost"),
        tmp_path / "a.mp4",
        allowed=parse_allowed_hosts("localhost"),
    )
    # The name is resolved once, by the guard; the connection itself only sees the checked IP.
    assert looked_up.count("localhost") == 1
    assert set(looked_up) <= {"localhost", "127.0.0.1"}
    assert media_server.seen.hosts[-1] == f"localhost:{media_server.port}"


def test_size_limit_from_content_length(media_server: MediaServer, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="larger than the 1048576-byte limit") as caught:
        fetch_to_file(
            _url(media_server, "/large"),
            tmp_path / "a.mp4",
            allowed=LOOPBACK,
            max_bytes=1 << 20,
        )
    assert not isinstance(caught.value, TransientFetchError)
    assert _files_in(tmp_path) == []


def test_size_limit_while_streaming(media_server: MediaServer, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="larger than the 1048576-byte limit"):
        fetch_to_file(
            _url(media_server, "/large-unsized"),
            tmp_path / "a.mp4",
            allowed=LOOPBACK,
            max_bytes=1 << 20,
        )
    assert _files_in(tmp_path) == []


def test_a_body_of_exactly_max_bytes_is_accepted(media_server: MediaServer, tmp_path: Path) -> None:
    url = _url(media_server, "/large-unsized")
    assert fetch_to_file(url, tmp_path / "a.mp4", allowed=LOOPBACK, max_bytes=len(LARGE)) == len(LARGE)


def test_404_is_a_permanent_fetch_error_without_the_query_string(media_server: MediaServer, tmp_path: Path) -> None:
    url = _url(media_server, "/missing?X-Amz-Signature=topsecret&token=abc")
    with pytest.raises(FetchError, match="404") as caught:
        fetch_to_file(url, tmp_path / "a.mp4", allowed=LOOPBACK)
    assert not isinstance(caught.value, TransientFetchError)
    message = str(caught.value)
    assert _url(media_server, "/missing") in message
    assert "topsecret" not in message and "token" not in message
    assert _files_in(tmp_path) == []


@pytest.mark.parametrize(("path", "status"), [("/unavailable", "503"), ("/busy", "429")])
def test_5xx_and_429_are_transient(media_server: MediaServer, tmp_path: Path, path: str, status: str) -> None:
    with pytest.raises(TransientFetchError, match=status):
        fetch_to_file(f"http://127.0.0.1:{media_server.port}{path}", tmp_path / "a.mp4", allowed=LOOPBACK)


def test_relative_redirect_is_followed(media_server: MediaServer, tmp_path: Path) -> None:
    dest = tmp_path / "a.mp4"
    fetch_to_file(_url(media_server, "/redirect"), dest, allowed=LOOPBACK)
    assert dest.read_bytes() == PAYLOAD


def test_redirect_to_another_host_is_checked_again(media_server: MediaServer, tmp_path: Path) -> None:
    # 127.0.0.1 allows the address, not the name: the hop to `localhost` resolves to the same
    # allowed address and passes; a hop to the metadata endpoint never does.
    fetch_to_file(_url(media_server, "/redirect-localhost"), tmp_path / "a.mp4", allowed=LOOPBACK)
    assert media_server.seen.hosts[-1] == f"localhost:{media_server.port}"

    everything = parse_allowed_hosts("0.0.0.0/0,::/0")
    with pytest.raises(BlockedDestinationError, match=r"169\.254\.169\.254") as caught:
        fetch_to_file(_url(media_server, "/redirect-metadata"), tmp_path / "b.mp4", allowed=everything)
    assert "security-credentials" in str(caught.value)
    assert _files_in(tmp_path) == ["a.mp4"]


def test_redirect_to_an_address_not_allowed_is_refused(media_server: MediaServer, tmp_path: Path) -> None:
    with pytest.raises(BlockedDestinationError, match=r"127\.0\.0\.2 is not a public address"):
        fetch_to_file(_url(media_server, "/redirect-other-loopback"), tmp_path / "a.mp4", allowed=LOOPBACK)
    assert _files_in(tmp_path) == []


def test_at_most_three_redirects(media_server: MediaServer, tmp_path: Path) -> None:
    assert fetch_to_file(_url(media_server, "/chain/2"), tmp_path / "a.mp4", allowed=LOOPBACK) == len(PAYLOAD)
    with pytest.raises(FetchError, match="more than 3 redirects"):
        fetch_to_file(_url(media_server, "/chain/3"), tmp_path / "b.mp4", allowed=LOOPBACK)
    assert _files_in(tmp_path) == ["a.mp4"]


def test_timeout_is_transient(media_server: MediaServer, tmp_path: Path) -> None:
    with pytest.raises(TransientFetchError, match="timed out"):
        fetch_to_file(_url(media_server, "/slow"), tmp_path / "a.mp4", allowed=LOOPBACK, timeout=0.2)
    assert _files_in(tmp_path) == []


def test_connection_refused_is_transient(tmp_path: Path) -> None:
    with pytest.raises(TransientFetchError, match="ConnectError"):
        fetch_to_file(f"http://127.0.0.1:{_closed_port()}/bytes", tmp_path / "a.mp4", allowed=LOOPBACK)


def test_proxy_variables_are_not_used(
    media_server: MediaServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A proxy would resolve the name itself, after the check: the fetch goes direct.
    proxy = f"http://127.0.0.1:{_closed_port()}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(name, proxy)
    assert fetch_to_file(_url(media_server, "/bytes"), tmp_path / "a.mp4", allowed=LOOPBACK)


def test_https_connects_to_the_ip_but_verifies_and_sends_sni_for_the_hostname(
    tls_server: tuple[MediaServer, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, ca_path = tls_server
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_path))
    dest = tmp_path / "a.mp4"

    fetch_to_file(_url(server, "/bytes", "localhost"), dest, allowed=parse_allowed_hosts("localhost"))

    assert dest.read_bytes() == PAYLOAD
    assert server.seen.sni[-1] == "localhost"
    assert server.seen.hosts[-1] == f"localhost:{server.port}"


def test_https_certificate_not_matching_the_url_host_is_refused(
    tls_server: tuple[MediaServer, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, ca_path = tls_server
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_path))
    # The certificate names only `localhost`: asking for 127.0.0.1 must fail verification.
    with pytest.raises(FetchError, match=r"TLS certificate of 127\.0\.0\.1 not accepted") as caught:
        fetch_to_file(_url(server, "/bytes"), tmp_path / "a.mp4", allowed=LOOPBACK)
    assert not isinstance(caught.value, TransientFetchError)
    assert _files_in(tmp_path) == []


def test_https_with_an_untrusted_ca_is_refused(
    tls_server: tuple[MediaServer, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, _ = tls_server
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    with pytest.raises(FetchError, match="TLS certificate of localhost not accepted"):
        fetch_to_file(
            _url(server, "/bytes", "localhost"),
            tmp_path / "a.mp4",
            allowed=parse_allowed_hosts("localhost"),
        )
