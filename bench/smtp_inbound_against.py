"""Two source trees' gateways side by side: which one receives with less CPU, on the same machine minutes.

    .venv/bin/python bench/smtp_inbound_against.py DIR [--postgres] [--batches 10] [--batch 150] [--clients 20]

DIR is another tree of this project (``git worktree add /tmp/base HEAD~3``).
One ``directgw serve`` (one worker) runs from DIR and one from this tree, each
on its own site and database; then ``--batches`` times, a batch of
pre-sealed messages (bench/smtp_inbound.py's) goes to each in turn, in
alternating order, and each gateway's CPU (from /proc), wall time and times
to 250 are summed over its own batches. Run one after the other, two
measurements of one tree on these shared machines differed by half
(docs/receive.md, "Tenth round"); interleaved in batches of seconds, both
trees see the same slow and fast spells, and the ratios printed last are
what to compare. ``--clients 1`` measures one connection's latency.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import smtp_inbound as bench  # the bench's own helpers, beside this file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("against", type=Path, help="the other source tree")
    parser.add_argument("--postgres", action="store_true", help="both on PostgreSQL at $DIRECTGW_TEST_POSTGRES")
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--batch", type=int, default=150)
    parser.add_argument("--clients", type=int, default=20)
    args = parser.parse_args()
    trees: dict[str, Path | None] = {str(args.against): args.against.resolve(), "this tree": None}
    warm = 2 * args.clients
    messages = bench.sealed(4_000, 2 * (warm + args.batches * args.batch), datetime.now(UTC))
    urls = {name: bench.postgres_url() if args.postgres else None for name in trees}
    servers = {name: bench.start_gateway(bench.site(urls[name], tree), 1, tree) for name, tree in trees.items()}
    cpu = dict.fromkeys(trees, 0.0)
    wall = dict.fromkeys(trees, 0.0)
    latencies: dict[str, list[float]] = {name: [] for name in trees}
    try:
        for server in servers.values():
            messages, first = messages[warm:], messages[:warm]
            asyncio.run(bench.load(server.port, first, args.clients))
        for n in range(args.batches):
            order = list(servers.items())
            for name, server in order if n % 2 == 0 else order[::-1]:
                messages, batch = messages[args.batch:], messages[:args.batch]
                before, start = server.cpu_seconds(), time.perf_counter()
                _rate, took, failures = asyncio.run(bench.load(server.port, batch, args.clients))
                wall[name] += time.perf_counter() - start
                cpu[name] += server.cpu_seconds() - before
                latencies[name] += took
                if failures:
                    raise SystemExit(f"{name}: refused {failures[:5]}")
    finally:
        for server in servers.values():
            server.stop()
        for url in urls.values():
            if url:
                bench.drop_postgres(url)
    count = args.batches * args.batch
    for name in trees:
        print(f"{name:>30}: {count / wall[name]:7.1f} msgs/s, {cpu[name] / count * 1000:5.2f} ms CPU/msg, "
              f"p50 {bench.percentile(latencies[name], 0.5) * 1000:6.2f} ms")
    base, this = (str(args.against), "this tree")
    print(f"this tree / {base}: rate {wall[base] / wall[this]:.3f}x, CPU per message {cpu[this] / cpu[base]:.3f}x, "
          f"p50 {bench.percentile(latencies[this], 0.5) / bench.percentile(latencies[base], 0.5):.3f}x "
          f"({'postgresql' if args.postgres else 'sqlite'}, {args.clients} clients, {count} messages each)")


if __name__ == "__main__":
    main()
