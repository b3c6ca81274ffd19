"""POST a JSON alert to an https URL, refusing anything that could reach inside the network.

Rules: https only (TLS verified against the system's or a given CA file); no user:password in the
URL; the host is resolved first and every address it resolves to must be public (loopback,
private, link-local, site-local, shared, reserved and multicast addresses are refused unless
``allow_private``). An IPv6 address that carries an IPv4 address is judged as that IPv4 address
first (every form: IPv4-compatible ::a.b.c.d, mapped ::ffff:a.b.c.d, translated ::ffff:0:a.b.c.d,
NAT64 64:ff9b::/96 and the local-use 64:ff9b:1::/48 at each RFC 6052 position, 6to4 2002::/16,
and both the server and the (inverted) client of Teredo 2001::/32), then as itself; Python's
`is_global` alone is not trusted for these. Cloud metadata addresses are refused always. The connection goes to the
address that was checked (no second lookup, so DNS rebinding cannot swap it); redirects are not
followed; connect and read share one timeout; at most 64 KiB of the answer is read.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import json
import socket
import ssl
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from keelml import __version__

METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254",  # AWS, GCP, Azure, DigitalOcean, OpenStack instance metadata
    "169.254.170.2",  # AWS ECS task metadata
    "fd00:ec2::254",  # AWS instance metadata over IPv6
    "100.100.100.200",  # Alibaba Cloud
    "192.0.0.192",  # Oracle Cloud
))
NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052 well-known prefix
NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215 local-use: translated as the local network says
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated ::a.b.c.d
IPV4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # SIIT ::ffff:0:a.b.c.d
SITE_LOCAL = ipaddress.ip_network("fec0::/10")  # deprecated, but still routed inside some networks
MAX_ANSWER = 64 * 1024
Resolver = Callable[..., list[tuple[Any, ...]]]


class WebhookRefused(Exception):
    """The URL or one of its addresses is not allowed; nothing was sent."""


def check_address(address: str, *, allow_private: bool) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The address if a webhook may connect to it; WebhookRefused (with the reason) otherwise."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        for embedded in embedded_ipv4(ip):  # an IPv6 form of an IPv4 address is judged as that address
            check_address(str(embedded), allow_private=allow_private)
        for candidate in _local_nat64_candidates(ip):
            if candidate in METADATA_ADDRESSES:
                raise WebhookRefused(f"{ip} may translate to {candidate}, a cloud metadata address")
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
    if ip in METADATA_ADDRESSES:
        raise WebhookRefused(f"{ip} is a cloud metadata address")
    if ip.is_unspecified or ip.is_multicast:
        raise WebhookRefused(f"{ip} is not a unicast address")
    if not allow_private:
        kind = ("loopback" if ip.is_loopback else "link-local" if ip.is_link_local
                else "site-local" if ip in SITE_LOCAL else "local-use NAT64" if ip in NAT64_LOCAL
                else "private" if ip.is_private else None if ip.is_global else "not public")
        if kind is not None:
            raise WebhookRefused(f"{ip} is a {kind} address (set allow_private: true to allow it)")
    return ip


def _bits(ip: ipaddress.IPv6Address, start: int, length: int) -> int:
    """`length` bits of the address from bit `start` (0 = the most significant)."""
    return (int(ip) >> (128 - start - length)) & ((1 << length) - 1)


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address stands for (empty for a plain IPv6 address)."""
    found: list[int] = []
    low = _bits(ip, 96, 32)
    if (ip.ipv4_mapped is not None or ip in IPV4_TRANSLATED or ip in NAT64 or (ip in NAT64_LOCAL and low)
            or (ip in IPV4_COMPATIBLE and int(ip) > 1)):  # :: and ::1 are judged as themselves
        found.append(low)  # the low 32 bits (for local-use NAT64: its /96 form, when used)
    if ip.sixtofour is not None:
        found.append(int(ip.sixtofour))
    if ip.teredo is not None:  # (server, client); Python already un-inverts the client address
        found += [int(ip.teredo[0]), int(ip.teredo[1])]
    return [ipaddress.IPv4Address(v) for v in dict.fromkeys(found)]


def _local_nat64_candidates(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """For the local-use NAT64 prefix, the IPv4 address at each other RFC 6052 position (after a /48,
    /56 or /64 prefix, skipping bits 64-71): which one the local translator uses is not known here."""
    if ip not in NAT64_LOCAL:
        return []
    values = ((_bits(ip, 48, 16) << 16) | _bits(ip, 72, 16), (_bits(ip, 56, 8) << 24) | _bits(ip, 72, 24),
              _bits(ip, 72, 32))
    return [ipaddress.IPv4Address(v) for v in values]


def resolve(url: str, *, allow_private: bool, resolver: Resolver = socket.getaddrinfo) -> tuple[str, int, str, str]:
    """(host, port, request target, checked address) for an allowed URL; WebhookRefused otherwise."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "https":
        raise WebhookRefused(f"only https:// URLs are allowed, not {parts.scheme or 'no scheme'}://")
    if parts.username is not None or parts.password is not None:
        raise WebhookRefused("credentials in the URL are not allowed (use secret_env to sign the body)")
    host = parts.hostname
    if not host:
        raise WebhookRefused("the URL has no host")
    try:
        port = parts.port or 443
    except ValueError:
        raise WebhookRefused("the URL's port is not a number between 1 and 65535") from None
    try:
        found = resolver(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise WebhookRefused(f"cannot resolve {host}: {exc}") from None
    addresses = sorted({str(info[4][0]) for info in found})
    if not addresses:
        raise WebhookRefused(f"{host} resolves to no address")
    for address in addresses:  # every address must pass: a mixed answer is refused
        check_address(address, allow_private=allow_private)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return host, port, target, addresses[0]


class _PinnedConnection(http.client.HTTPSConnection):
    """An HTTPS connection to a checked address, with SNI and certificate checks for the host name."""

    def __init__(self, host: str, port: int, address: str, context: ssl.SSLContext, timeout: float) -> None:
        super().__init__(f"[{host}]" if ":" in host else host, port, timeout=timeout, context=context)
        self._address = address
        self._server_name = host
        self._tls = context

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(raw, server_hostname=self._server_name)


def post_json(url: str, payload: Mapping[str, Any], *, allow_private: bool = False, timeout: float = 5.0,
              ca_file: str | None = None, secret: bytes | None = None,
              resolver: Resolver = socket.getaddrinfo) -> dict[str, Any]:
    """POST ``payload`` as JSON; returns ``{"ok", "status", "detail"}``. Refusals raise WebhookRefused."""
    host, port, target, address = resolve(url, allow_private=allow_private, resolver=resolver)
    body = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()
    headers = {"Content-Type": "application/json", "User-Agent": f"keelml/{__version__}",
               "Content-Length": str(len(body))}
    if secret is not None:
        headers["X-Keel-Signature"] = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    context = ssl.create_default_context(cafile=ca_file)
    connection = _PinnedConnection(host, port, address, context, timeout)
    try:
        connection.request("POST", target, body=body, headers=headers)
        answer = connection.getresponse()
        answer.read(MAX_ANSWER)
        status = answer.status
        if 300 <= status < 400:
            return {"ok": False, "status": status,
                    "detail": f"redirect ({status}) not followed: webhooks must answer directly"}
        if not 200 <= status < 300:
            return {"ok": False, "status": status, "detail": f"the endpoint answered {status} {answer.reason}"}
        return {"ok": True, "status": status, "detail": f"delivered ({status})"}
    except (OSError, http.client.HTTPException) as exc:  # timeouts, TLS failures, refused connections
        return {"ok": False, "status": None, "detail": f"not delivered: {type(exc).__name__}: {exc}"[:300]}
    finally:
        connection.close()
