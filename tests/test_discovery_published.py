"""Discovery finds our own published certificates through our own DNS
responder (gateway.publish) on loopback, over UDP and, for a 4096-bit
certificate, TCP; and ``directgw discover`` prints what it found."""

from __future__ import annotations

import asyncio
import json

import pytest

from anchors.source import StaticAnchors
from gateway.cli.main import main
from gateway.discovery import (
    Binding,
    Discovered,
    DiscoverySettings,
    DoNotSend,
    Nameserver,
    Outcome,
    TrustServiceJudge,
    build_discovery,
)
from gateway.publish import DnsSettings, StaticPublished, start_responder
from trust import HttpFetcher, TrustService

from .pki import NOW, address_leaf, issue, new_key, org_leaf, root

ZONE = "pub.test"


@pytest.fixture(scope="module")
def pki():
    anchor = root("Published Root")
    return {
        "anchor": anchor,
        "bob": address_leaf(anchor, f"bob@{ZONE}"),
        "org": org_leaf(anchor, ZONE),
        "big": issue(f"big@{ZONE}", issuer=anchor, email=f"big@{ZONE}", key=new_key("rsa", 4096), key_size=4096),
        "big-2": issue(f"big@{ZONE}", issuer=anchor, email=f"big@{ZONE}", key=new_key("rsa", 4096), key_size=4096),
    }


@pytest.fixture
async def responder(pki):
    published = StaticPublished.of([pki[k].ref for k in ("bob", "org", "big", "big-2")])
    running = await start_responder(DnsSettings(zones=(ZONE,)), published, host="127.0.0.1", port=0)
    yield running
    await running.close()


async def _discover(running, pki, address):
    fetcher = HttpFetcher(timeout=2.0)
    try:
        trust = TrustService(StaticAnchors((pki["anchor"].ref,)), fetcher)
        settings = DiscoverySettings((Nameserver("127.0.0.1", running.port),), dns_timeout=2.0, ldap=False)
        return await build_discovery(settings, TrustServiceJudge(trust), fetcher).discover(
            address, local_domain="sender.test", at=NOW
        )
    finally:
        await fetcher.close()


@pytest.mark.parametrize(
    ("address", "who", "binding", "tcp"),
    [(f"bob@{ZONE}", ("bob",), Binding.ADDRESS, False), (f"alice@{ZONE}", ("org",), Binding.ORG, False),
     (f"big@{ZONE}", ("big", "big-2"), Binding.ADDRESS, True)],
    ids=["address-bound-udp", "org-bound-after-nxdomain", "two-4096-bit-over-tcp"],
)
async def test_discovery_finds_our_published_certificates(responder, pki, address, who, binding, tcp):
    result = await _discover(responder, pki, address)
    assert isinstance(result, Discovered), result
    assert set(result.certificates) == {pki[w].ref for w in who} and result.binding is binding
    assert result.reports[-1].query.endswith("(tcp)") is tcp


async def test_a_dead_nameserver_passes_the_question_to_the_next(responder, pki):
    from .servers.common import free_port

    fetcher = HttpFetcher(timeout=2.0)
    try:
        trust = TrustService(StaticAnchors((pki["anchor"].ref,)), fetcher)
        dead, alive = Nameserver("127.0.0.1", free_port()), Nameserver("127.0.0.1", responder.port)
        settings = DiscoverySettings((dead, alive), dns_timeout=0.3, ldap=False)
        result = await build_discovery(settings, TrustServiceJudge(trust), fetcher).discover(
            f"bob@{ZONE}", local_domain="sender.test", at=NOW
        )
    finally:
        await fetcher.close()
    assert isinstance(result, Discovered) and result.reports[0].query.endswith(f"@{alive}")


async def test_a_domain_we_do_not_serve_is_refused(responder, pki):
    result = await _discover(responder, pki, "bob@elsewhere.test")
    assert isinstance(result, DoNotSend)
    assert [r.outcome for r in result.reports] == [Outcome.ERROR, Outcome.ERROR]
    assert "REFUSED" in result.reports[0].detail


def test_cli_discover_json(pki, tmp_path, capsys):
    """The command line against the responder, run in a thread of its own loop."""
    anchor = tmp_path / "anchor.pem"
    anchor.write_bytes(pki["anchor"].pem)
    published = StaticPublished.of([pki["bob"].ref])

    async def scenario():
        running = await start_responder(DnsSettings(zones=(ZONE,)), published, host="127.0.0.1", port=0)
        try:
            argv = ["discover", f"bob@{ZONE}", "--nameserver", f"127.0.0.1:{running.port}", "--anchor", str(anchor),
                    "--no-ldap", "--at", NOW.isoformat(), "--json"]
            return await asyncio.to_thread(main, argv)
        finally:
            await running.close()

    code = asyncio.run(scenario())
    printed = capsys.readouterr().out
    out = json.loads(printed[printed.index("\n{") + 1 :] if not printed.startswith("{") else printed)
    assert code == 0 and out["send"] is True and out["binding"] == "address"
    assert out["selected"][0]["addresses"] == [f"bob@{ZONE}"]
    assert out["asked"][0]["outcome"] == "found"


class _CountingRelay(asyncio.DatagramProtocol):
    """A UDP relay on loopback in front of the real responder, counting questions."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.questions = 0
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.questions += 1
        asyncio.get_running_loop().create_task(self._relay(data, addr))

    async def _relay(self, data: bytes, addr) -> None:
        import dns.asyncquery
        import dns.message

        reply = await dns.asyncquery.udp(dns.message.from_wire(data), "127.0.0.1", port=self.upstream, timeout=2)
        assert self.transport is not None
        self.transport.sendto(reply.to_wire(), addr)


async def test_concurrent_lookups_share_one_question(responder, pki):
    loop = asyncio.get_running_loop()
    transport, relay = await loop.create_datagram_endpoint(
        lambda: _CountingRelay(responder.port), local_addr=("127.0.0.1", 0)
    )
    fetcher = HttpFetcher(timeout=2.0)
    try:
        trust = TrustService(StaticAnchors((pki["anchor"].ref,)), fetcher)
        settings = DiscoverySettings((Nameserver("127.0.0.1", transport.get_extra_info("sockname")[1]),), ldap=False)
        d = build_discovery(settings, TrustServiceJudge(trust), fetcher)
        results = await asyncio.gather(*(d.discover(f"bob@{ZONE}", local_domain="s.test", at=NOW) for _ in range(20)))
    finally:
        await fetcher.close()
        transport.close()
    assert all(isinstance(r, Discovered) and r.certificates == (pki["bob"].ref,) for r in results)
    assert relay.questions == 1


async def test_discovered_certificates_go_straight_to_seal_outbound(responder, pki):
    """Both certificates found for big@ are encrypted to, and each key opens the message."""
    from gateway.core import Opened, open_inbound
    from gateway.core.outbound import Sealed, SealOptions, seal_outbound

    from . import messages

    result = await _discover(responder, pki, f"big@{ZONE}")
    assert isinstance(result, Discovered)
    sender = address_leaf(pki["anchor"], "alice@sender.test")
    plain = messages.plain(sender="alice@sender.test", recipients=(f"big@{ZONE}",))
    sealed = seal_outbound(plain, sender.pair, result.certificates, SealOptions(at=NOW))
    assert isinstance(sealed, Sealed), sealed
    for who in ("big", "big-2"):
        opened = open_inbound(sealed.message, [pki[who].pair], at=NOW)
        assert isinstance(opened, Opened), opened
