"""The SSRF guard: a URL may lead only to public addresses or those `VIDEO_PIPELINES_ALLOWED_HOSTS` allows.
Metadata endpoints hand out instance credentials: only an entry naming their exact address allows one."""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from video_pipelines.errors import BlockedDestinationError, FetchError, TransientFetchError, VideoPipelineError

ALLOWED_HOSTS_ENV = "VIDEO_PIPELINES_ALLOWED_HOSTS"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, ...
        "fd00:ec2::254",  # AWS over IPv6
        "169.254.170.2",  # AWS ECS task credentials
        "169.254.170.23",  # AWS EKS pod identity
        "fd00:ec2::23",  # AWS EKS pod identity over IPv6
        "100.100.100.200",  # Alibaba Cloud
    )
)
_SHARED = ipaddress.ip_network("100.64.0.0/10")
_HOSTNAME = re.compile(r"(\*\.)?([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*")
_SCHEMES = {"http": 80, "https": 443}

if TYPE_CHECKING:
    import httpx


def normalize_hostname(host: str) -> str:
    """Lowercase, without the trailing dot of a fully qualified name."""
    return host.strip().rstrip(".").lower()


def _plain(ip: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is the IPv4 address it carries."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def blocked_reason(ip: IPAddress) -> str | None:
    """Why an address is not a public destination, or None when it is one."""
    ip = _plain(ip)
    checks: tuple[tuple[bool, str], ...] = (
        (ip in METADATA_ADDRESSES, "cloud metadata endpoint"),
        (ip.is_unspecified, "unspecified"),
        (ip.is_loopback, "loopback"),
        (ip.is_link_local, "link-local"),
        (ip.is_multicast, "multicast"),
        (isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED, "shared address space"),
        (ip.is_private, "private"),
        (ip.is_reserved, "reserved"),
        (not ip.is_global, "not globally routable"),
    )
    return next((reason for hit, reason in checks if hit), None)


@dataclass(frozen=True)
class AllowedHosts:
    """Hosts and networks an operator allows although they are private (see the module docstring)."""

    hostnames: frozenset[str] = frozenset()
    domain_suffixes: frozenset[str] = frozenset()
    addresses: frozenset[IPAddress] = frozenset()
    networks: tuple[IPNetwork, ...] = field(default=())

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AllowedHosts:
        """Read `VIDEO_PIPELINES_ALLOWED_HOSTS` (from `os.environ` unless `environ` is given)."""
        env = os.environ if environ is None else environ
        return parse_allowed_hosts(env.get(ALLOWED_HOSTS_ENV))

    def allows_hostname(self, host: str) -> bool:
        host = normalize_hostname(host)
        return host in self.hostnames or any(host.endswith(suffix) for suffix in self.domain_suffixes)

    def allows_address(self, ip: IPAddress) -> bool:
        ip = _plain(ip)
        # A metadata address only by an entry naming it: no network allows one.
        return ip in self.addresses or (ip not in METADATA_ADDRESSES and any(ip in net for net in self.networks))


def _parse_ip(text: str) -> IPAddress | IPNetwork | None:
    text = text.removeprefix("[").replace("]", "")
    try:
        return ipaddress.ip_network(text, strict=False) if "/" in text else ipaddress.ip_address(text)
    except ValueError:
        return None


def parse_allowed_hosts(value: str | None) -> AllowedHosts:
    """Parse a comma-separated `VIDEO_PIPELINES_ALLOWED_HOSTS` value; a bad entry is an error, not skipped."""
    hostnames: set[str] = set()
    suffixes: set[str] = set()
    addresses: set[IPAddress] = set()
    networks: list[IPNetwork] = []
    for raw in (value or "").split(","):
        entry = raw.strip()
        if not entry:
            continue
        parsed = _parse_ip(entry)
        if isinstance(parsed, ipaddress.IPv4Network | ipaddress.IPv6Network) and parsed.num_addresses == 1:
            parsed = parsed.network_address
        if isinstance(parsed, ipaddress.IPv4Network | ipaddress.IPv6Network):
            networks.append(parsed)
        elif parsed is not None:
            addresses.add(_plain(parsed))
        else:
            try:
                host = normalize_hostname(entry).encode("idna").decode("ascii")
            except UnicodeError:
                host = ""
            if "/" in entry or not _HOSTNAME.fullmatch(host):
                raise VideoPipelineError(
                    f"{ALLOWED_HOSTS_ENV}: {entry!r} is not a hostname, *.domain, IP address or CIDR "
                    "(no scheme, port or path; separate entries with commas)"
                )
            if host.startswith("*."):
                suffixes.add(host[1:])
            else:
                hostnames.add(host)
    return AllowedHosts(frozenset(hostnames), frozenset(suffixes), frozenset(addresses), tuple(networks))


def redact_url(url: str | httpx.URL) -> str:
    """`scheme://host[:port]/path` only: no user info, query string (signatures) or fragment."""
    if isinstance(url, str):
        # The standard library's parser: a command that only names a URL (a database's in a warning) loads no httpx,
        # which brings click and rich along (a tenth of a second of `video-pipelines submit`).
        try:
            parts = urlsplit(url)
            scheme, host, port, path = parts.scheme, parts.hostname or "", parts.port, parts.path
        except ValueError:
            return "<invalid URL>"
    else:
        scheme, host, port, path = url.scheme, url.host, url.port, url.path
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port else host
    return f"{scheme}://{netloc}{path}"


@dataclass(frozen=True)
class Destination:
    """A URL whose host resolved only to checked addresses; connect to `ip`, never resolve again."""

    url: httpx.URL = field(repr=False)
    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]

    @property
    def ip(self) -> str:
        """The checked address to connect to first."""
        return self.addresses[0]

    @property
    def host_header(self) -> str:
        """The `Host` header the original URL implies (port only when not the scheme's default)."""
        return self.url.netloc.decode("ascii")

    @property
    def redacted(self) -> str:
        return redact_url(self.url)

    def url_at(self, ip: str) -> httpx.URL:
        """The original URL with its host replaced by a checked address."""
        return self.url.copy_with(host=ip)


def _resolve(host: str, port: int, shown: str) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        message = f"cannot resolve the host of {shown}: {exc.strerror or exc}"
        if exc.errno == socket.EAI_AGAIN:
            raise TransientFetchError(message) from exc
        raise FetchError(message) from exc
    except UnicodeError as exc:
        raise FetchError(f"invalid host name in {shown}") from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def resolve_destination(url: str, allowed: AllowedHosts) -> Destination:
    """Check that `url` is http(s) and that every address its host resolves to may be reached."""
    import httpx  # as in redact_url

    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise FetchError(f"not a valid URL: {redact_url(url)} ({exc})") from exc
    shown = redact_url(parsed)
    scheme = parsed.scheme.lower()
    if scheme not in _SCHEMES:
        raise BlockedDestinationError(f"only http and https URLs can be fetched, got {shown}")
    host = normalize_hostname(parsed.raw_host.decode("ascii"))
    if not host:
        raise FetchError(f"URL has no host: {shown}")
    port = parsed.port or _SCHEMES[scheme]
    literal = _parse_ip(host)
    addresses = [host] if literal is not None else _resolve(host, port, shown)
    if not addresses:
        raise FetchError(f"the host of {shown} resolved to no address")
    host_allowed = allowed.allows_hostname(host)
    for text in addresses:
        ip = ipaddress.ip_address(text.partition("%")[0])
        reason = blocked_reason(ip)
        if reason is None or allowed.allows_address(ip):
            continue
        where = f"{text} is" if literal is not None else f"{host} resolves to {text},"
        if _plain(ip) in METADATA_ADDRESSES:
            raise BlockedDestinationError(
                f"refused to fetch {shown}: {where} a cloud metadata endpoint; only a "
                f"{ALLOWED_HOSTS_ENV} entry naming that exact address allows it"
            )
        if host_allowed:
            continue
        raise BlockedDestinationError(
            f"refused to fetch {shown}: {where} not a public address ({reason}); "
            f"add the host or address to {ALLOWED_HOSTS_ENV} to allow it"
        )
    return Destination(url=parsed, scheme=scheme, host=host, port=port, addresses=tuple(addresses))
