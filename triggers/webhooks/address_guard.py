"""Keeps webhook deliveries off loopback, private and cloud-metadata addresses (SSRF).

A webhook URL is chosen by a user, and the worker that calls it sits inside the deployment's
network: unguarded, `http://169.254.169.254/` would hand that user the cloud credentials, and
`http://10.0.0.5:27017/` a port scan. The guard therefore decides on the addresses a name
RESOLVES to, not on the name, and `GuardedBackend` connects to exactly the addresses it checked:
the name is looked up once per connection, so a DNS answer that changes between check and
connect (DNS rebinding) cannot slip a private address in. Redirects are never followed, since a
public endpoint could otherwise bounce the worker anywhere.

`check` runs when a webhook is created or changed, for an early clear refusal; the backend runs
on every connection a delivery opens, because DNS can change after creation.
"""

import asyncio
import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import anyio
import httpcore
import httpx

Resolver = Callable[[str, int], Awaitable[list[str]]]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH = 2048

# Instance-metadata services hand out credentials: named on their own so the refusal says why.
_METADATA = frozenset(
    ipaddress.ip_address(address)
    for address in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean
        "fd00:ec2::254",  # AWS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud
    )
)
_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT (RFC 6598)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # the well-known NAT64 prefix (RFC 6052)
# Special-purpose blocks, not globally reachable in IANA's registry, that Python 3.11's
# `is_global` still reports as global.
_NOT_GLOBAL = tuple(
    ipaddress.ip_network(block)
    for block in (
        "192.0.0.0/24",  # IETF protocol assignments
        "192.88.99.0/24",  # the deprecated 6to4 relay anycast
        "3fff::/20",  # documentation
        "5f00::/16",  # segment routing SIDs
    )
)


class UnsafeAddress(Exception):
    """A webhook URL or address that deliveries may not call; the message says why, for the user
    who entered it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnresolvableHost(UnsafeAddress):
    """A host name with no address. Refused at creation like any unsafe URL, but at delivery
    `GuardedBackend` reports it as a connection error, since DNS failures are often passing."""


def check_url(url: str) -> httpx.URL:
    """The parsed URL if its form is acceptable: what can be told without resolving anything."""
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeAddress(f"webhook URLs are at most {MAX_URL_LENGTH} characters")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise UnsafeAddress(f"not a valid URL: {exc}") from exc
    if parsed.scheme not in ("http", "https"):
        raise UnsafeAddress("webhook URLs must be http or https")
    if not parsed.host:
        raise UnsafeAddress("a webhook URL needs a host")
    if parsed.userinfo:
        # Credentials in the URL would be stored and shown in clear; headers are the place.
        raise UnsafeAddress("webhook URLs may not carry credentials (user:password@)")
    return parsed


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form stands for (IPv4-mapped, 6to4, NAT64), which is where the
    packets end up and so what is judged."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _kind(ip: IPAddress) -> str | None:
    """What kind of non-public address `ip` is, or None when it is globally reachable. Flags are
    tested one by one, since Python's `is_global` alone lets multicast and some reserved blocks
    through."""
    if ip in _METADATA:
        return "a cloud metadata address"
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if ip in _SHARED:
        return "a carrier-grade NAT address"
    if ip.is_reserved:
        return "a reserved address"
    if ip.is_private:
        return "a private address"
    if not ip.is_global or any(ip in block for block in _NOT_GLOBAL):
        return "not a public address"
    return None


def refusal(address: str) -> str | None:
    """Why deliveries may not call `address` (an IP address string), or None if it is public."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return f"{address} is not an IP address"
    embedded = _embedded_ipv4(ip) if isinstance(ip, ipaddress.IPv6Address) else None
    if embedded is not None:
        kind = _kind(embedded)
        return None if kind is None else f"{address} stands for {embedded}, {kind}"
    kind = _kind(ip)
    return None if kind is None else f"{address} is {kind}"


async def system_resolver(host: str, port: int) -> list[str]:
    """The addresses the operating system resolves `host` to, from its own resolver, hosts file
    and cache; a failed lookup raises socket.gaierror (an OSError)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(sockaddr[0]) for *_, sockaddr in infos]


class AddressGuard:
    """Decides which addresses a delivery to `host` may connect to.

    `allow_private` lets deliveries reach private addresses, for development and tests where the
    receiver runs on the same machine; production leaves it off.
    """

    def __init__(self, resolver: Resolver = system_resolver, allow_private: bool = False) -> None:
        self._resolver = resolver
        self._allow_private = allow_private

    async def addresses(self, host: str, port: int) -> list[str]:
        """The addresses to connect to for `host`, in the resolver's order, once every one of
        them passes: one refused address refuses the host, since which one a connection uses
        is not ours to choose once a name is shared with an attacker's records."""
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            ip = None
        if ip is not None:
            reason = refusal(host)
            if reason is not None and not self._allow_private:
                raise UnsafeAddress(reason)
            return [str(ip)]
        try:
            resolved = await self._resolver(host, port)
        except OSError as exc:
            raise UnresolvableHost(f"{host} does not resolve: {exc}") from exc
        found = list(dict.fromkeys(resolved))
        if not found:
            raise UnresolvableHost(f"{host} does not resolve")
        if not self._allow_private:
            for address in found:
                reason = refusal(address)
                if reason is not None:
                    raise UnsafeAddress(f"{host} resolves to a refused address: {reason}")
        return found

    async def check(self, url: str) -> None:
        """Refuses `url` with UnsafeAddress unless a delivery to it may go out now."""
        parsed = check_url(url)
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        await self.addresses(parsed.host, port)


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that opens TCP connections only to addresses the guard
    passed.

    httpcore hands `connect_tcp` the request's host name and does TLS above the stream it
    returns with that same name, so connecting to a checked IP here keeps SNI and certificate
    checks on the name while the address stays pinned.
    """

    def __init__(
        self, guard: AddressGuard, inner: httpcore.AsyncNetworkBackend | None = None
    ) -> None:
        self._guard = guard
        self._inner = inner if inner is not None else httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """A stream to the first checked address of `host` that accepts, all within `timeout`.

        UnsafeAddress propagates as it is (httpx re-raises exceptions that are not httpcore's);
        a host that does not resolve becomes httpcore.ConnectError, as it would unguarded, with
        the reason as its message (httpcore's pool re-raises `from None`, dropping the cause).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            with anyio.fail_after(timeout):
                addresses = await self._guard.addresses(host, port)
        except UnresolvableHost as exc:
            raise httpcore.ConnectError(exc.reason) from exc
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from exc
        *others, last = addresses
        for address in others:
            try:
                return await self._connect(address, port, deadline, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout):
                continue
        return await self._connect(last, port, deadline, local_address, socket_options)

    async def _connect(
        self,
        address: str,
        port: int,
        deadline: float | None,
        local_address: str | None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None,
    ) -> httpcore.AsyncNetworkStream:
        """One connection attempt with what is left of the caller's timeout."""
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise httpcore.ConnectTimeout(f"connecting to {address} timed out")
        return await self._inner.connect_tcp(
            address,
            port,
            timeout=remaining,
            local_address=local_address,
            socket_options=socket_options,
        )

    async def sleep(self, seconds: float) -> None:
        """httpcore sleeps through its backend between connection retries."""
        await self._inner.sleep(seconds)


class _GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport with its connection pool swapped for one on a GuardedBackend.

    Subclassing keeps httpx's request/response and exception mapping, which a hand-written
    transport would have to copy; the price is replacing `_pool`, an attribute httpx 0.28 does
    not document (its constructor accepts no network backend).
    """

    def __init__(self, backend: GuardedBackend, max_connections: int) -> None:
        ssl_context = httpx.create_ssl_context(trust_env=False)
        super().__init__(verify=ssl_context, trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            # httpx's default; httpcore's own keeps idle connections, and their address, forever.
            keepalive_expiry=5.0,
            network_backend=backend,
        )


# Settings that would route around the guard or that the guarded transport makes itself.
_FIXED = frozenset(
    {"transport", "mounts", "proxy", "trust_env", "follow_redirects", "verify", "cert", "limits"}
)


def guarded_client(
    guard: AddressGuard,
    *,
    backend: httpcore.AsyncNetworkBackend | None = None,
    max_connections: int = 1000,
    **client_kwargs: Any,
) -> httpx.AsyncClient:
    """An AsyncClient whose every connection goes through `guard`: no redirects followed, no
    proxy taken from the environment. `backend` replaces the inner network backend (tests
    record connections with it); other keyword arguments (timeout, headers…) go to the client.
    """
    fixed = _FIXED.intersection(client_kwargs)
    if fixed:
        raise TypeError(f"guarded_client sets {', '.join(sorted(fixed))} itself")
    transport = _GuardedTransport(GuardedBackend(guard, inner=backend), max_connections)
    return httpx.AsyncClient(
        transport=transport, follow_redirects=False, trust_env=False, **client_kwargs
    )
