"""The SSRF guard refuses non-public addresses before any connection is opened.

No test here sends a packet beyond loopback: names resolve through an injected table (an
unknown name fails like NXDOMAIN), and the network backend under the guard records every
connection and fails the test on any address that is not loopback.
"""

import asyncio
import ipaddress
import re
import socket
from collections.abc import AsyncIterator, Iterable

import httpcore
import httpx
import pytest

from triggers.webhooks.address_guard import (
    AddressGuard,
    Resolver,
    UnresolvableHost,
    UnsafeAddress,
    check_url,
    guarded_client,
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


class RecordingBackend(httpcore.AnyIOBackend):
    """Records every connection; refuses (as connection refused) the addresses in `refuse`, and
    fails the test before connecting anywhere but loopback."""

    def __init__(self, refuse: frozenset[str] = frozenset()) -> None:
        self.calls: list[tuple[str, int]] = []
        self._refuse = refuse

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.calls.append((host, port))
        if not ipaddress.ip_address(host).is_loopback:
            pytest.fail(f"a connection to {host} was attempted")
        if host in self._refuse:
            raise httpcore.ConnectError(f"[Errno 111] Connection refused ({host})")
        return await super().connect_tcp(host, port, timeout, local_address, socket_options)


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


async def test_client_refuses_a_private_name_before_connecting() -> None:
    recorder = RecordingBackend()
    guard = AddressGuard(table({"hooks.example": ["127.0.0.1"]}))
    async with guarded_client(guard, backend=recorder) as client:
        # UnsafeAddress is re-raised as is, not wrapped in an httpx error.
        with pytest.raises(UnsafeAddress, match=r"hooks\.example resolves to a refused address"):
            await client.post("http://hooks.example:9/in", content=b"{}")
        with pytest.raises(UnsafeAddress, match=r"127\.0\.0\.1 is a loopback address"):
            await client.post("http://127.0.0.1:9/in", content=b"{}")
    assert recorder.calls == []


async def test_client_reports_an_unresolvable_name_as_a_connection_error() -> None:
    recorder = RecordingBackend()
    async with guarded_client(AddressGuard(table({})), backend=recorder) as client:
        with pytest.raises(httpx.ConnectError, match=r"^nowhere\.example does not resolve"):
            await client.get("http://nowhere.example/")
    assert recorder.calls == []


async def test_client_connects_to_the_checked_address(server: LoopbackServer) -> None:
    recorder = RecordingBackend()
    guard = AddressGuard(table({"hooks.example": ["127.0.0.1"]}), allow_private=True)
    async with guarded_client(guard, backend=recorder, timeout=5) as client:
        response = await client.post(f"http://hooks.example:{server.port}/", content=b"{}")
    assert (response.status_code, response.text) == (200, "ok")
    assert recorder.calls == [("127.0.0.1", server.port)]
    assert server.hosts == [f"hooks.example:{server.port}"]


async def test_client_does_not_follow_redirects(server: LoopbackServer) -> None:
    recorder = RecordingBackend()
    guard = AddressGuard(table({"hooks.example": ["127.0.0.1"]}), allow_private=True)
    async with guarded_client(guard, backend=recorder, timeout=5) as client:
        response = await client.get(f"http://hooks.example:{server.port}/redirect")
    assert response.status_code == 302
    assert response.headers["location"] == "http://169.254.169.254/latest/meta-data"
    assert recorder.calls == [("127.0.0.1", server.port)]


async def test_client_tries_the_next_checked_address(server: LoopbackServer) -> None:
    recorder = RecordingBackend(refuse=frozenset({"127.0.0.9"}))
    guard = AddressGuard(table({"hooks.example": ["127.0.0.9", "127.0.0.1"]}), allow_private=True)
    async with guarded_client(guard, backend=recorder, timeout=5) as client:
        response = await client.get(f"http://hooks.example:{server.port}/")
    assert response.status_code == 200
    assert recorder.calls == [("127.0.0.9", server.port), ("127.0.0.1", server.port)]


async def test_client_raises_the_last_connection_error() -> None:
    recorder = RecordingBackend(refuse=frozenset({"127.0.0.8", "127.0.0.9"}))
    guard = AddressGuard(table({"hooks.example": ["127.0.0.8", "127.0.0.9"]}), allow_private=True)
    async with guarded_client(guard, backend=recorder) as client:
        with pytest.raises(httpx.ConnectError, match=r"127\.0\.0\.9"):
            await client.get("http://hooks.example:9/")
    assert [host for host, _ in recorder.calls] == ["127.0.0.8", "127.0.0.9"]


async def test_client_times_out_a_slow_lookup() -> None:
    async def slow(host: str, port: int) -> list[str]:
        await asyncio.sleep(5)
        return ["127.0.0.1"]

    recorder = RecordingBackend()
    async with guarded_client(AddressGuard(slow), backend=recorder, timeout=0.05) as client:
        with pytest.raises(httpx.ConnectTimeout, match=r"resolving hooks\.example timed out"):
            await client.get("http://hooks.example/")
    assert recorder.calls == []


@pytest.mark.parametrize("option", ["proxy", "mounts", "transport", "follow_redirects"])
def test_client_settings_that_would_bypass_the_guard_are_refused(option: str) -> None:
    with pytest.raises(TypeError, match=option):
        guarded_client(AddressGuard(), **{option: None})
