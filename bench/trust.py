"""Trust decisions per second: cold (validated) and warm (from the decision cache).

A 3-certificate chain (root anchor, intermediate, address-bound leaf), each
below the root naming a CRL distribution point served by an aiohttp server on
127.0.0.1; the intermediate's CRL lists REVOKED_ENTRIES other certificates.

- cold, CRLs held: the decision cache is cleared before every decision, CRLs
  stay parsed in the revocation cache (a new sender whose CA we already know:
  path validation plus RFC 5280 6.3 CRL processing);
- cold, CRLs fetched: a new TrustService per decision (HTTP fetch and parse of
  both CRLs as well);
- warm: the same decision again (a busy sender: one validation, then hits).

Target (issue 3): a busy sender costs one validation. Run: .venv/bin/python bench/trust.py
"""

from __future__ import annotations

import asyncio
import datetime as dt
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from anchors.source import Direction, StaticAnchors
from gateway import devpki
from trust import Destinations, HttpFetcher, Purpose, TrustService

REVOKED_ENTRIES = 1000


def crl(issuer: devpki.Issued, serials: range) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    b = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.cert.subject)
        .last_update(devpki.NOW - dt.timedelta(hours=1))
        .next_update(devpki.NOW + dt.timedelta(days=7))
    )
    for s in serials:
        b = b.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(s).revocation_date(devpki.NOW - dt.timedelta(days=2)).build()
        )
    return b.sign(issuer.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


async def rate(fn, seconds: float) -> tuple[float, float]:
    """(decisions per second, median ms) over about ``seconds``."""
    times: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or len(times) < 5:
        t0 = time.perf_counter()
        await fn()
        times.append(time.perf_counter() - t0)
    return len(times) / sum(times), statistics.median(times) * 1000


async def main() -> None:
    from aiohttp import web

    files: dict[str, bytes] = {}

    async def serve(request: web.Request) -> web.Response:
        return web.Response(body=files[request.path]) if request.path in files else web.Response(status=404)

    app = web.Application()
    app.router.add_get("/{name}", serve)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}"

    root = devpki.root("Bench Root CA")
    inter = devpki.intermediate(root, "Bench Issuing CA", crl_urls=(f"{url}/root.crl",))
    leaf = devpki.address_leaf(inter, "alice@a.test", crl_urls=(f"{url}/int.crl",))
    files["/root.crl"] = crl(root, range(0))
    files["/int.crl"] = crl(inter, range(1, REVOKED_ENTRIES + 1))

    anchors = StaticAnchors((root.ref,))
    fetcher = HttpFetcher(destinations=Destinations.allowing(["127.0.0.1/32"]))  # the bench serves on loopback
    kw = {"purpose": Purpose.SIGNING, "bound_to": "alice@a.test", "local_domain": "b.test",
          "direction": Direction.INCOMING, "at": devpki.NOW, "intermediates": (inter.ref,)}

    service = TrustService(anchors, fetcher)
    first = await service.decide(leaf.ref, **kw)
    assert first.trusted, first

    async def cold_held() -> None:
        service.cache.clear()
        d = await service.decide(leaf.ref, **kw)
        assert d.trusted and not d.cached

    async def cold_fetched() -> None:
        d = await TrustService(anchors, fetcher).decide(leaf.ref, **kw)
        assert d.trusted and not d.cached

    async def warm() -> None:
        d = await service.decide(leaf.ref, **kw)
        assert d.cached

    await service.decide(leaf.ref, **kw)
    print(f"chain: leaf <- intermediate <- root anchor; intermediate CRL with {REVOKED_ENTRIES} entries "
          f"({len(files['/int.crl'])} bytes), served on 127.0.0.1")
    for name, fn, seconds in (
        ("cold, CRLs held (cache cleared)", cold_held, 3.0),
        ("cold, CRLs fetched (new service)", cold_fetched, 3.0),
        ("warm (decision cached)", warm, 1.0),
    ):
        per_s, median_ms = await rate(fn, seconds)
        print(f"{name:36s} {per_s:10.1f} decisions/s   median {median_ms:8.3f} ms")
    await fetcher.close()
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
