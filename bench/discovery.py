"""Discovery lookups per second against a DNS server on loopback: warm and cold.

Knot DNS (``knotd``, run from a zone file in a temporary directory) serves one
address-bound CERT record (an RSA-2048 certificate under a test root); when
knotd is absent, our own responder (gateway.publish) serves it in-process.
Every lookup is the full ``Discovery.discover`` the gateway runs before
sealing, judged by the real TrustService:

- warm: the same address again and again (DNS answer and trust decision cached);
- cold DNS: the DNS cache cleared before every lookup (a UDP question to the
  server each time; the trust decision stays cached, as on a busy gateway
  where records expire before certificates change);
- cold: new Discovery and TrustService every lookup (DNS plus full path validation).

Run: .venv/bin/python bench/discovery.py [--seconds 3] [--server knot|ours]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from anchors.source import StaticAnchors
from gateway.discovery import (
    Discovered,
    DiscoverySettings,
    Nameserver,
    TrustServiceJudge,
    build_discovery,
)
from gateway.publish import DnsSettings, StaticPublished, start_responder
from tests.pki import NOW, address_leaf, root
from trust import HttpFetcher, TrustService

ZONE = "bench.test"
ADDRESS = f"bob@{ZONE}"


def build(anchor, nameserver: Nameserver, fetcher: HttpFetcher):
    trust = TrustService(StaticAnchors((anchor.ref,)), fetcher)
    settings = DiscoverySettings((nameserver,), ldap=False)
    return build_discovery(settings, TrustServiceJudge(trust), fetcher)


async def rate(label: str, seconds: float, step) -> float:
    rounds = []
    for _ in range(3):  # median of three rounds: these machines are noisy
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 3:
            await step()
            n += 1
        rounds.append(n / (time.perf_counter() - start))
    value = statistics.median(rounds)
    print(f"{label:<12} {value:10.0f} lookups/s   (rounds: {', '.join(f'{r:.0f}' for r in rounds)})")
    return value


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--server", choices=["knot", "ours"], default="knot" if shutil.which("knotd") else "ours")
    args = parser.parse_args()

    anchor = root("Bench Root")
    leaf = address_leaf(anchor, ADDRESS)
    knot = running = None
    workdir = tempfile.TemporaryDirectory()
    if args.server == "knot":
        from tests.servers.knot import KnotServer, cert_line

        knot = KnotServer(Path(workdir.name), {ZONE: [cert_line("bob", leaf.der)]}).start()
        nameserver = Nameserver.parse(knot.nameserver)
    else:
        running = await start_responder(
            DnsSettings(zones=(ZONE,)), StaticPublished.of([leaf.ref]), host="127.0.0.1", port=0
        )
        nameserver = Nameserver("127.0.0.1", running.port)
    fetcher = HttpFetcher()
    try:
        print(f"discovery of {ADDRESS} via {args.server} at {nameserver}, judged by TrustService")
        warm_d = build(anchor, nameserver, fetcher)
        first = await warm_d.discover(ADDRESS, local_domain="sender.test", at=NOW)
        assert isinstance(first, Discovered), first

        async def warm() -> None:
            await warm_d.discover(ADDRESS, local_domain="sender.test", at=NOW)

        async def cold_dns() -> None:
            warm_d.dns.cache.clear()
            await warm_d.discover(ADDRESS, local_domain="sender.test", at=NOW)

        async def cold() -> None:
            d = build(anchor, nameserver, fetcher)
            result = await d.discover(ADDRESS, local_domain="sender.test", at=NOW)
            assert isinstance(result, Discovered)

        w = await rate("warm", args.seconds, warm)
        c1 = await rate("cold DNS", args.seconds, cold_dns)
        c2 = await rate("cold", args.seconds, cold)
        print(f"warm/cold-DNS {w / c1:.0f}x, warm/cold {w / c2:.0f}x")
    finally:
        await fetcher.close()
        if running is not None:
            await running.close()
        if knot is not None:
            knot.stop()
        workdir.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
