"""Keeps webhook deliveries off loopback, private and cloud-metadata addresses (SSRF).

A webhook URL is chosen by a user, and the worker that calls it sits inside the deployment's
network: unguarded, `http://169.254.169.254/` would hand that user the cloud credentials, and
`http://10.0.0.5:27017/` a port scan. The guard therefore decides on the addresses a name
RESOLVES to, not on the name, and the session `guarded_session` makes connects to exactly the
addresses it checked: the name is looked up once per new connection, so a DNS answer that
changes between check and connect (DNS rebinding) cannot slip a private address in. Redirects
are not followed (callers pass `allow_redirects=False`), since a public endpoint could otherwise
bounce the worker anywhere.

`check` runs when a webhook is created or changed, for an early clear refusal; the session's
connector runs on every connection a delivery opens, because DNS can change after creation.
"""

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohappyeyeballs import AddrInfoType
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.client_proto import ResponseHandler
from yarl import URL

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
    `GuardedResolver` reports it as a connection error, since DNS failures are often passing."""


def check_url(url: str) -> URL:
    """The parsed URL if its form is acceptable: what can be told without resolving anything.

    It is parsed with yarl, as aiohttp parses it at delivery, so the host judged here is the
    host a delivery connects to.
    """
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeAddress(f"webhook URLs are at most {MAX_URL_LENGTH} characters")
    try:
        parsed = URL(url)
    except ValueError as exc:
        raise UnsafeAddress(f"not a valid URL: {exc}") from exc
    if parsed.scheme not in ("http", "https"):
        raise UnsafeAddress("webhook URLs must be http or https")
    if not parsed.raw_host:
        raise UnsafeAddress("a webhook URL needs a host")
    if parsed.user is not None or parsed.password is not None:
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
        # raw_host is the IDNA (ASCII) form, the one aiohttp resolves at delivery.
        host, port = parsed.raw_host, parsed.port
        # check_url refuses a URL without a host, and yarl gives http(s) their default port.
        assert host is not None
        assert port is not None
        await self.addresses(host, port)


class GuardedResolver(AbstractResolver):
    """An aiohttp resolver that answers only with addresses the guard passed.

    A name with any refused address raises UnsafeAddress, which aiohttp lets through as it is
    (it wraps only OSErrors). A name that does not resolve becomes an OSError, which aiohttp
    reports as ClientConnectorDNSError, a connection error worth retrying; its exception chain
    keeps the lookup's own error but not UnresolvableHost, so a caller looking for an
    UnsafeAddress in the chain does not take a passing DNS failure for a refusal.
    """

    def __init__(self, guard: AddressGuard) -> None:
        self._guard = guard

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """The addresses of `host` the guard passed, in its order, as numeric results so that
        nothing looks them up again; only those of `family` unless it is AF_UNSPEC, as
        aiohttp's resolver contract asks (its connector passes AF_UNSPEC by default)."""
        unresolvable: UnresolvableHost | None = None
        try:
            addresses = await self._guard.addresses(host, port)
        except UnresolvableHost as exc:
            unresolvable = exc
        if unresolvable is not None:
            # Raised outside the except clause so that UnresolvableHost is not its __context__.
            raise OSError(None, unresolvable.reason) from unresolvable.__cause__
        results: list[ResolveResult] = []
        for address in addresses:
            address_family = socket.AF_INET6 if ":" in address else socket.AF_INET
            if family not in (socket.AF_UNSPEC, address_family):
                continue
            results.append(
                ResolveResult(
                    hostname=host,
                    host=address,
                    port=port,
                    family=address_family,
                    proto=0,
                    flags=socket.AI_NUMERICHOST,
                )
            )
        if not results:
            raise OSError(None, f"{host} does not resolve to an address of family {family!r}")
        return results

    async def close(self) -> None:
        """Nothing to release: this resolver holds no resources, the guard's resolver does
        the lookups."""


class GuardedConnector(aiohttp.TCPConnector):
    """A TCPConnector that opens sockets only to addresses the guard passes, and never through
    a proxy.

    Names are checked by its GuardedResolver, with the reason naming the host. aiohttp does not
    resolve IP-literal hosts, so the resolver never sees them; the check therefore also sits in
    `_wrap_create_connection`, the one place TCPConnector opens sockets (as of aiohttp 3.14),
    and judges every address handed to it, literal or resolved, before any socket exists. The
    tests refusing literals fail if a later aiohttp stops calling it.

    aiohttp connects to the resolved address but does TLS with the URL's host as
    server_hostname, so SNI and certificate checks stay on the name while the address stays
    pinned to the one checked.
    """

    def __init__(self, *, guard: AddressGuard, **kwargs: Any) -> None:
        self._guard = guard
        # No DNS cache: each new connection judges the current answer, and a lookup runs in the
        # request's own task, so the request's timeout also bounds it.
        super().__init__(resolver=GuardedResolver(guard), use_dns_cache=False, **kwargs)

    async def _create_connection(
        self, req: aiohttp.ClientRequest, *args: Any, **kwargs: Any
    ) -> ResponseHandler:
        """Refuses a request's `proxy=`: a proxy would reach the target for us, unchecked."""
        if req.proxy is not None:
            raise UnsafeAddress("webhook deliveries do not go through a proxy")
        return await super()._create_connection(req, *args, **kwargs)

    async def _wrap_create_connection(
        self, *args: Any, addr_infos: list[AddrInfoType], **kwargs: Any
    ) -> tuple[asyncio.Transport, ResponseHandler]:
        """Connects to one of `addr_infos` once every one of them passes the guard."""
        for *_, sockaddr in addr_infos:
            await self._guard.addresses(str(sockaddr[0]), int(sockaddr[1]))
        return await super()._wrap_create_connection(*args, addr_infos=addr_infos, **kwargs)


# Settings that would route around the guard, or that guarded_session makes itself.
_FIXED = frozenset({"connector", "connector_owner", "trust_env", "proxy", "proxy_auth"})


def guarded_session(
    guard: AddressGuard,
    *,
    max_connections: int = 1000,
    connector_class: type[aiohttp.TCPConnector] = aiohttp.TCPConnector,
    **session_kwargs: Any,
) -> aiohttp.ClientSession:
    """A ClientSession whose every connection goes through `guard`, with no proxy, neither
    from the environment nor per request.

    A refused address, literal or resolved, raises UnsafeAddress itself from the request (with
    its `.reason`), before any socket is opened; a name that does not resolve raises
    aiohttp.ClientConnectorDNSError. A session cannot forbid redirects for every request, so
    callers pass `allow_redirects=False`; a redirect followed anyway is still guarded, as each
    hop opens its connection here.

    `connector_class` is a TCPConnector subclass, for tests that record connection attempts; it
    is placed under GuardedConnector, so the guard runs before anything it overrides. Other
    keyword arguments (timeout, headers…) go to the session.
    """
    fixed = _FIXED.intersection(session_kwargs)
    if fixed:
        raise TypeError(f"guarded_session sets {', '.join(sorted(fixed))} itself")
    guarded = type(f"Guarded{connector_class.__name__}", (GuardedConnector, connector_class), {})
    connector = guarded(guard=guard, limit=max_connections, limit_per_host=0)
    return aiohttp.ClientSession(connector=connector, trust_env=False, **session_kwargs)
