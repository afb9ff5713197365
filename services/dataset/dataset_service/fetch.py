"""Fetching an archive over HTTP(S) without reaching what a client should not.

A client names the URL of a ``url`` source, so a service that fetched anything it was told
would let a request reach the services beside it (the trainer's API, a cloud metadata address)
and read their answers back through its errors. So, by default, a URL whose host resolves to a
loopback, link-local, private, multicast, reserved or unspecified address (IPv4 or IPv6,
IPv4-mapped included) is refused, before any connection:

- the host is resolved once per hop and every address it resolves to is checked;
- the connection goes to the address that was checked (pinned: a second DNS answer cannot
  swap it; TLS still verifies the certificate against the host's name);
- redirects are followed one hop at a time, each hop checked the same way;
- a refusal says ``refused: address not allowed`` and never what a refused host would answer.

A lab mirror on a private network is allowed by name or address in ``UrlPolicy.allowed_hosts``
(the service's ``DATASET_ALLOWED_URL_HOSTS``): those hosts are fetched whatever they resolve to.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx

from dataset_service.errors import SourceError

MAX_REDIRECTS = 5


class UrlRefused(SourceError):
    """The URL (or a redirect) leads to an address this service must not fetch from."""


@dataclass(frozen=True)
class UrlPolicy:
    """Which hosts a download may reach: public addresses, and ``allowed_hosts`` (names or
    addresses, compared lowercased) whatever they resolve to."""

    allowed_hosts: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def of(cls, hosts: str | None) -> UrlPolicy:
        """From a comma-separated list (the setting's form)."""
        return cls(frozenset(h.strip().lower() for h in (hosts or "").split(",") if h.strip()))

    def pin(self, url: httpx.URL) -> str:
        """The address to connect to for ``url``; ``UrlRefused`` if it must not be fetched,
        ``SourceError`` if the name does not resolve."""
        host = (url.host or "").lower()
        if url.scheme not in ("http", "https") or not host:
            raise UrlRefused(f"refused: {url.scheme or 'no'} URL (http and https only)")
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise SourceError(f"cannot resolve the host {host!r}: {exc.strerror}") from None
        addresses = [info[4][0] for info in infos]
        if host not in self.allowed_hosts:
            for address in addresses:
                reason = _not_public(address)
                if reason and address not in self.allowed_hosts:
                    raise UrlRefused(
                        f"refused: address not allowed ({host!r} resolves to a {reason} address; "
                        "DATASET_ALLOWED_URL_HOSTS may allow a lab mirror)"
                    )
        return addresses[0]


def _not_public(address: str) -> str | None:
    """What kind of non-public address this is, or None for a public one."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for kind in ("loopback", "link_local", "multicast", "unspecified", "reserved", "private"):
        if getattr(ip, f"is_{kind}"):
            return kind.replace("_", "-")
    return None


@contextmanager
def open_stream(url: str, policy: UrlPolicy, timeout_s: float) -> Iterator[httpx.Response]:
    """A streamed GET of ``url`` whose every hop passed ``policy`` and was pinned to the
    address checked; the response is the final hop's (any status)."""
    current = httpx.URL(url)
    with httpx.Client(timeout=timeout_s, follow_redirects=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            address = policy.pin(current)
            host_header = current.host if current.port is None else f"{current.host}:{current.port}"
            request = client.build_request(
                "GET",
                current.copy_with(host=address),
                headers={"Host": host_header},
                extensions={"sni_hostname": current.host} if current.scheme == "https" else {},
            )
            response = client.send(request, stream=True)
            if not response.is_redirect:
                try:
                    yield response
                finally:
                    response.close()
                return
            location = response.headers.get("location")
            response.close()
            if not location:
                raise SourceError(f"HTTP {response.status_code} redirect without a Location")
            current = current.join(location)
        raise SourceError(f"more than {MAX_REDIRECTS} redirects")
