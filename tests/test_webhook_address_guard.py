"""The SSRF guard refuses non-public addresses before any connection is opened.

No test here sends a packet beyond loopback: names resolve through an injected table (an
unknown name fails like NXDOMAIN), and the connector class under the guard makes every socket
through a factory that records its address and fails the test, before the socket exists, on
any address that is not loopback.
"""

import asyncio
import errno
import ipaddress
import re
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohappyeyeballs import AddrInfoType

from triggers.webhooks.address_guard import (
    AddressGuard,
    GuardedConnector,
    GuardedResolver,
    Resolver,
    UnresolvableHost,
    UnsafeAddress,
    check_url,
    guarded_session,
    refusal,
    system_resolver,
)

PUBLIC = "93.184.215.14"


def table(names: dict[str, list[str]]) -> Resolver:
    """A resolver answering from `names` only; other names fail as a lookup of a missing name."""

    async def resolve(host: str, port: int) -> list[str]:
        if host not in names:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return names[host]

    return resolve


class Recorder(aiohttp.TCPConnector):
    """Makes every socket through a factory that records the address it is for; refuses (as
    connection refused) the addresses in `refuse`, and fails the test before making a socket
    for anything but loopback. The socket factory is where aiohappyeyeballs turns each address
    into a socket, so it sees each attempt, after anything the guard above it decides."""

    refuse: frozenset[str] = frozenset()

    def __init__(self, **kwargs: Any) -> None:
        self.calls: list[tuple[str, int]] = []
        super().__init__(socket_factory=self._socket, **kwargs)

    def _socket(self, addr_info: AddrInfoType) -> socket.socket:
        family, kind, proto, _, sockaddr = addr_info
        host, port = str(sockaddr[0]), int(sockaddr[1])
        self.calls.append((host, port))
        if not ipaddress.ip_address(host).is_loopback:
            pytest.fail(f"a connection to {host} was attempted")
        if host in self.refuse:
            raise ConnectionRefusedError(errno.ECONNREFUSED, f"Connection refused ({host})")
        return socket.socket(family, kind, proto)


def refusing(*hosts: str) -> type[Recorder]:
    """A Recorder that refuses connections to `hosts`."""
    return type("RefusingRecorder", (Recorder,), {"refuse": frozenset(hosts)})


def calls(session: aiohttp.ClientSession) -> list[tuple[str, int]]:
    """The connection attempts the session's Recorder saw."""
    connector = session.connector
    assert isinstance(connector, Recorder)
    return connector.calls


class LoopbackServer:
    """A tiny HTTP/1.1 server on 127.0.0.1: `/` answers 200, `/redirect` a 302 to the metadata
    address; it notes the Host header of each request."""

    def __init__(self) -> None:
        self.hosts: list[str] = []
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        path = head[0].split(" ")[1]
        fields = dict(line.lower().split(": ", 1) for line in head[1:] if line)
        self.hosts.append(fields.get("host", ""))
        # Read the body too: closing with unread data would reset the connection.
        await reader.readexactly(int(fields.get("content-length", "0")))
        if path == "/redirect":
            status, extra = "302 Found", "Location: http://169.254.169.254/latest/meta-data\r\n"
        else:
            status, extra = "200 OK", ""
        writer.write(
            f"HTTP/1.1 {status}\r\n{extra}Content-Length: 2\r\nConnection: close\r\n\r\nok".encode()
        )
        await writer.drain()
        writer.close()
        await writer.wait_closed()


@pytest.fixture
async def server() -> AsyncIterator[LoopbackServer]:
    loopback = LoopbackServer()
    listener = await asyncio.start_server(loopback.handle, "127.0.0.1", 0)
    loopback.port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield loopback


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1", "127.0.0.1 is a loopback address"),
        ("http://10.1.2.3", "10.1.2.3 is a private address"),
        ("http://169.254.169.254/latest/meta-data", "169.254.169.254 is a cloud metadata address"),
        ("http://169.254.10.1/", "link-local"),
        ("http://[::1]/", "::1 is a loopback address"),
        ("http://[::ffff:127.0.0.1]/", "stands for 127.0.0.1, a loopback address"),
        ("http://[::ffff:a9fe:a9fe]/", "stands for 169.254.169.254, a cloud metadata address"),
        ("http://[64:ff9b::a00:1]/", "stands for 10.0.0.1, a private address"),
        ("http://[2002:c0a8:101::1]/", "stands for 192.168.1.1, a private address"),
        ("http://[fd00:ec2::254]/", "cloud metadata"),
        ("http://[fe80::1]/", "link-local"),
        ("http://[fc00::1]/", "private"),
        ("http://[::7f00:1]/", "reserved"),
        ("http://100.64.0.1/", "carrier-grade NAT"),
        ("http://224.0.0.1/", "multicast"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://240.0.0.1/", "reserved"),
        ("http://192.0.0.8/", "not a public address"),
        ("http://192.0.2.1/", "private"),
        ("ftp://example.com/", "must be http or https"),
        ("file:///etc/passwd", "must be http or https"),
        ("http://user:pw@example.com/", "credentials"),
        ("http://example.com/" + "a" * 2048, "at most 2048"),
        ("http://[::1/", "not a valid URL"),
    ],
)
async def test_check_refuses(url: str, reason: str) -> None:
    with pytest.raises(UnsafeAddress, match=re.escape(reason)):
        await AddressGuard(table({})).check(url)


@pytest.mark.parametrize(
    ("names", "reason"),
    [
        (
            {"internal.example": ["10.0.0.5"]},
            "internal.example resolves to a refused address: 10.0",
        ),
        ({"internal.example": [PUBLIC, "10.0.0.6"]}, "refused address: 10.0.0.6 is a private"),
        ({"internal.example": ["::ffff:10.0.0.7"]}, "stands for 10.0.0.7"),
    ],
)
async def test_check_refuses_a_name_with_any_refused_address(
    names: dict[str, list[str]], reason: str
) -> None:
    with pytest.raises(UnsafeAddress, match=reason):
        await AddressGuard(table(names)).check("https://internal.example/hook")


@pytest.mark.parametrize("names", [{}, {"nowhere.example": []}])
async def test_check_refuses_a_name_that_does_not_resolve(names: dict[str, list[str]]) -> None:
    with pytest.raises(UnresolvableHost, match=r"nowhere\.example does not resolve"):
        await AddressGuard(table(names)).check("https://nowhere.example/")


async def test_check_accepts_public_addresses() -> None:
    guard = AddressGuard(table({"hooks.example": [PUBLIC, "2606:4700::1111", PUBLIC]}))
    await guard.check("https://hooks.example/in")
    await guard.check(f"http://{PUBLIC}:8080/in")
    await guard.check("https://[2606:4700::1111]/in")
    assert await guard.addresses("hooks.example", 443) == [PUBLIC, "2606:4700::1111"]


async def test_allow_private_accepts_private_addresses() -> None:
    guard = AddressGuard(table({"hooks.internal": ["10.0.0.5"]}), allow_private=True)
    await guard.check("http://hooks.internal/")
    await guard.check("http://127.0.0.1:8000/")
    with pytest.raises(UnsafeAddress, match="http or https"):
        await guard.check("gopher://127.0.0.1/")


def test_refusal_judges_single_addresses() -> None:
    assert refusal(PUBLIC) is None
    assert refusal("::ffff:8.8.8.8") is None
    assert refusal("2002:808:808::1") is None
    assert refusal("64:ff9b::808:808") is None
    assert refusal("127.0.0.53") == "127.0.0.53 is a loopback address"
    assert refusal("localhost") == "localhost is not an IP address"


def test_check_url_parses() -> None:
    assert check_url("https://Hooks.Example:8443/in?x=1").host == "hooks.example"


async def test_system_resolver_answers_for_a_literal() -> None:
    # A numeric host is answered without any DNS query.
    assert await system_resolver("127.0.0.1", 80) == ["127.0.0.1"]


def test_check_url_parses_as_aiohttp_does() -> None:
    assert check_url("http://bücher.example/").raw_host == "xn--bcher-kva.example"
    assert check_url("http://[::ffff:127.0.0.1]/").raw_host == "::ffff:7f00:1"


async def test_resolver_answers_with_the_checked_addresses() -> None:
    resolver = GuardedResolver(AddressGuard(table({"hooks.example": [PUBLIC, "2606:4700::1111"]})))
    both = await resolver.resolve("hooks.example", 443, family=socket.AF_UNSPEC)
    assert both == [
        {
            "hostname": "hooks.example",
            "host": PUBLIC,
            "port": 443,
            "family": socket.AF_INET,
            "proto": 0,
            "flags": socket.AI_NUMERICHOST,
        },
        {
            "hostname": "hooks.example",
            "host": "2606:4700::1111",
            "port": 443,
            "family": socket.AF_INET6,
            "proto": 0,
            "flags": socket.AI_NUMERICHOST,
        },
    ]
    assert [r["host"] for r in await resolver.resolve("hooks.example", 443)] == [PUBLIC]
    await resolver.close()


async def test_resolver_refuses_a_name_with_a_refused_address() -> None:
    resolver = GuardedResolver(AddressGuard(table({"hooks.example": [PUBLIC, "10.0.0.6"]})))
    with pytest.raises(UnsafeAddress, match=r"refused address: 10\.0\.0\.6 is a private"):
        await resolver.resolve("hooks.example", 443, family=socket.AF_UNSPEC)


async def test_session_refuses_a_private_name_before_connecting() -> None:
    guard = AddressGuard(table({"hooks.example": ["127.0.0.1"]}))
    async with guarded_session(guard, connector_class=Recorder) as session:
        assert isinstance(session.connector, GuardedConnector)
        # UnsafeAddress is raised as it is, not wrapped in an aiohttp error.
        with pytest.raises(UnsafeAddress, match=r"hooks\.example resolves to a refused address"):
            await session.post("http://hooks.example:9/in", data=b"{}", allow_redirects=False)
        assert calls(session) == []


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://10.1.2.3/", "10.1.2.3 is a private address"),
        ("http://[::1]/", "::1 is a loopback address"),
        ("http://127.0.0.1:9/in", "127.0.0.1 is a loopback address"),
        ("http://[::ffff:127.0.0.1]:9/", "stands for 127.0.0.1, a loopback address"),
        ("http://169.254.169.254/latest/meta-data", "a cloud metadata address"),
    ],
)
async def test_session_refuses_an_ip_literal_before_connecting(url: str, reason: str) -> None:
    # aiohttp never hands an IP literal to the resolver: the connector itself refuses it.
    async with guarded_session(AddressGuard(table({})), connector_class=Recorder) as session:
        with pytest.raises(UnsafeAddress, match=re.escape(reason)) as refused:
            await session.get(url, allow_redirects=False)
        assert calls(session) == []
    assert refused.value.reason.endswith(reason)


async def test_session_reports_an_unresolvable_name_as_a_connection_error() -> None:
    async with guarded_session(AddressGuard(table({})), connector_class=Recorder) as session:
        with pytest.raises(
            aiohttp.ClientConnectorError, match=r"nowhere\.example does not resolve"
        ):
            await session.get("http://nowhere.example/", allow_redirects=False)
        assert calls(session) == []


async def test_an_unresolvable_name_is_not_taken_for_a_refusal() -> None:
    # A caller finds refusals by walking the chain; a passing DNS failure must not be one.
    async with guarded_session(AddressGuard(table({})), connector_class=Recorder) as session:
        with pytest.raises(aiohttp.ClientConnectorDNSError) as failed:
            await session.get("http://nowhere.example/", allow_redirects=False)
    chain: list[BaseException] = []
    seen: BaseException | None = failed.value
    while seen is not None:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    assert not any(isinstance(error, UnsafeAddress) for error in chain)
    assert any(isinstance(error, socket.gaierror) for error in chain)


async def test_session_connects_to_the_checked_address(server: LoopbackServer) -> None:
    guard = AddressGuard(table({"hooks.example": ["127.0.0.1"]}), allow_private=True)
    async with guarded_session(
        guard, connector_class=Recorder, timeout=aiohttp.ClientTimeout(total=5)
    ) as session:
        async with session.post(
            f"http://hooks.example:{server.port}/", data=b"{}", allow_redirects=False
        ) as response:
            assert (response.status, await response.text()) == (200, "ok")
        assert calls(session) == [("127.0.0.1", server.port)]
    assert server.hosts == [f"hooks.example:{server.port}"]


async def test_session_does_not_follow_redirects(server: LoopbackServer) -> None:
    guard = AddressGuard(table({"hooks.example": ["127.0.0.1"]}), allow_private=True)
    async with guarded_session(
        guard, connector_class=Recorder, timeout=aiohttp.ClientTimeout(total=5)
    ) as session:
        async with session.get(
            f"http://hooks.example:{server.port}/redirect", allow_redirects=False
        ) as response:
            assert response.status == 302
            assert response.headers["location"] == "http://169.254.169.254/latest/meta-data"
        assert calls(session) == [("127.0.0.1", server.port)]


class LoopbackGuard(AddressGuard):
    """Passes hooks.example and 127.0.0.1, standing in for a public receiver, and judges every
    other host as production does: allow_private would let the metadata address through too."""

    async def addresses(self, host: str, port: int) -> list[str]:
        if host in ("hooks.example", "127.0.0.1"):
            return ["127.0.0.1"]
        return await super().addresses(host, port)


async def test_a_redirect_followed_anyway_is_still_guarded(server: LoopbackServer) -> None:
    # A caller that forgets allow_redirects=False still cannot reach the metadata address.
    async with guarded_session(
        LoopbackGuard(table({})), connector_class=Recorder, timeout=aiohttp.ClientTimeout(total=5)
    ) as session:
        with pytest.raises(UnsafeAddress, match=r"169\.254\.169\.254 is a cloud metadata"):
            await session.get(f"http://hooks.example:{server.port}/redirect")
        assert calls(session) == [("127.0.0.1", server.port)]


async def test_session_tries_the_next_checked_address(server: LoopbackServer) -> None:
    guard = AddressGuard(table({"hooks.example": ["127.0.0.9", "127.0.0.1"]}), allow_private=True)
    async with guarded_session(
        guard, connector_class=refusing("127.0.0.9"), timeout=aiohttp.ClientTimeout(total=5)
    ) as session:
        async with session.get(
            f"http://hooks.example:{server.port}/", allow_redirects=False
        ) as response:
            assert response.status == 200
        assert calls(session) == [("127.0.0.9", server.port), ("127.0.0.1", server.port)]


async def test_session_raises_the_last_connection_error() -> None:
    guard = AddressGuard(table({"hooks.example": ["127.0.0.8", "127.0.0.9"]}), allow_private=True)
    recorder = refusing("127.0.0.8", "127.0.0.9")
    async with guarded_session(guard, connector_class=recorder) as session:
        with pytest.raises(aiohttp.ClientConnectorError, match=r"127\.0\.0\.9"):
            await session.get("http://hooks.example:9/", allow_redirects=False)
        # aiohttp tries the whole list, then again without its first address.
        assert [host for host, _ in calls(session)] == ["127.0.0.8", "127.0.0.9", "127.0.0.9"]


async def test_session_times_out_a_slow_lookup() -> None:
    async def slow(host: str, port: int) -> list[str]:
        await asyncio.sleep(5)
        return ["127.0.0.1"]

    timeout = aiohttp.ClientTimeout(total=5, connect=0.05)
    async with guarded_session(
        AddressGuard(slow), connector_class=Recorder, timeout=timeout
    ) as session:
        started = asyncio.get_running_loop().time()
        with pytest.raises(aiohttp.ConnectionTimeoutError, match=r"hooks\.example"):
            await session.get("http://hooks.example/", allow_redirects=False)
        assert asyncio.get_running_loop().time() - started < 1
        assert calls(session) == []


async def test_session_refuses_a_proxy_given_per_request() -> None:
    guard = AddressGuard(table({"hooks.example": [PUBLIC]}))
    async with guarded_session(guard, connector_class=Recorder) as session:
        with pytest.raises(UnsafeAddress, match="do not go through a proxy"):
            await session.get(
                "http://hooks.example/", proxy="http://127.0.0.1:9", allow_redirects=False
            )
        assert calls(session) == []


async def test_session_places_the_guard_above_the_connector_class() -> None:
    # The guard runs first, whatever the class given overrides.
    async with guarded_session(AddressGuard(), connector_class=Recorder) as session:
        assert type(session.connector).__mro__[1:3] == (GuardedConnector, Recorder)


@pytest.mark.parametrize(
    "option", ["connector", "connector_owner", "trust_env", "proxy", "proxy_auth"]
)
def test_session_settings_that_would_bypass_the_guard_are_refused(option: str) -> None:
    with pytest.raises(TypeError, match=option):
        guarded_session(AddressGuard(), **{option: None})
