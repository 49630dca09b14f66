"""CPU per message of ``open_inbound`` on the typical Direct message, beside the crypto floor.

    .venv/bin/python bench/open_inbound.py [--messages 300] [--rounds 7] [--profile]
    .venv/bin/python bench/open_inbound.py --against DIR [--pairs 3]   # this tree and DIR's, back to back

The message is bench/smtp_inbound.py's (``sealed``): a multipart/mixed with a
text part and a 4 KB base64 C-CDA, signed by a.test's org certificate with its
chain, encrypted to b.test; about 14 KB sealed. Each round opens every message
once and takes CPU time (``time.process_time``); the figure is the median
round. The crypto floor (bench/core.py ``crypto_floor``: one RSA-2048 decrypt,
AES-256-CBC over the same ciphertext, one SHA-256 and one RSA verify) is
measured in the same run, and "pure Python" is what ``open_inbound`` costs
beyond it.

``--against DIR`` measures a second source tree (e.g. an earlier commit
extracted with ``git archive``) on the same messages and keys: rounds alternate
between a worker process importing this tree and one importing DIR, so both
see the same machine load, and the workers' results are compared (every
``Opened`` field, content and parts included) so a faster version is also
shown to give the same answers. The machine is shared: compare the ratio, not
absolute figures across runs.
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import hashlib
import os
import pickle
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _digest(result: Any) -> str:
    """One line naming everything a result holds (reprs leave out content and part data)."""
    h = hashlib.sha256(repr(result).encode())
    for name in ("content",):
        h.update(bytes(getattr(result, name, b"")))
    for part in getattr(result, "parts", ()):
        h.update(part.data)
    return h.hexdigest()


def _time_rounds(fn: Any, items: list[bytes], rounds: int) -> list[float]:
    """Seconds of CPU per item, one sample per round."""
    samples = []
    for _ in range(rounds):
        start = time.process_time()
        for item in items:
            fn(item)
        samples.append((time.process_time() - start) / len(items))
    return samples


def worker(path: str, rounds: int) -> None:
    """Open the pickled messages with whatever ``gateway`` PYTHONPATH gives; print ms/message per round."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    from gateway.core import open_inbound
    from gateway.core.certs import CertRef, KeyPair

    with open(path, "rb") as f:
        data = pickle.load(f)
    keys = [KeyPair(load_pem_private_key(data["key"], None), CertRef(data["cert"]))]  # type: ignore[arg-type]
    at, messages = data["at"], data["messages"]
    digests = [_digest(open_inbound(m, keys, at=at)) for m in messages]  # warm, and the answers
    samples = _time_rounds(lambda m: open_inbound(m, keys, at=at), messages, rounds)
    import gateway

    print(repr({"file": gateway.__file__, "ms": [s * 1000 for s in samples],
                "results": hashlib.sha256("".join(digests).encode()).hexdigest()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--profile", action="store_true", help="print cProfile's top functions")
    parser.add_argument("--top", type=int, default=35)
    parser.add_argument("--against", metavar="DIR", help="another source tree to compare with, back to back")
    parser.add_argument("--pairs", type=int, default=3, help="with --against: worker pairs, alternating")
    parser.add_argument("--worker", metavar="FILE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.rounds)
        return

    sys.path.insert(0, str(ROOT))
    from cryptography.hazmat.primitives import serialization

    from bench.core import crypto_floor
    from bench.smtp_inbound import A, B, sealed
    from gateway import devpki
    from gateway.core import Opened, open_inbound

    at = devpki.NOW
    messages = sealed(4_000, args.messages, at)
    first = open_inbound(messages[0], [B.org.pair], at=at)
    assert isinstance(first, Opened), first
    print(f"{len(messages)} messages of {len(messages[0]) / 1000:.1f} KB sealed, "
          f"{len(first.content) / 1000:.1f} KB signed content, {len(first.parts)} parts", file=sys.stderr)
    ciphertext = len(base64.b64decode(messages[0].split(b"\r\n\r\n", 1)[1]))
    floor = crypto_floor(B.org, A.org, ciphertext, len(first.content))
    floor_ms = statistics.median(_time_rounds(lambda _: floor(), messages[:100], args.rounds)) * 1000

    if args.against:
        key = B.org.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())
        with tempfile.NamedTemporaryFile(suffix=".pickle", delete=False) as f:
            pickle.dump({"key": key, "cert": B.org.der, "at": at, "messages": messages}, f)
        trees = {"this": str(ROOT), "against": str(Path(args.against).resolve())}
        found: dict[str, dict[str, Any]] = {}
        try:
            pair_ratios = []
            for _ in range(args.pairs):  # a worker for each tree in turn, each running every round
                pair = {}
                for label, tree in trees.items():
                    env = dict(os.environ, PYTHONPATH=tree)
                    out = subprocess.run([sys.executable, __file__, "--worker", f.name, "--rounds", str(args.rounds)],
                                         env=env, capture_output=True, text=True, check=True).stdout
                    got = eval(out.strip().splitlines()[-1])
                    assert got["file"].startswith(tree), (got["file"], tree)
                    entry = found.setdefault(label, {"ms": [], "results": got["results"]})
                    entry["ms"] += got["ms"]
                    assert entry["results"] == got["results"]
                    pair[label] = statistics.median(got["ms"])
                pair_ratios.append(pair["this"] / pair["against"])
        finally:
            os.unlink(f.name)
        print(f"crypto floor {floor_ms:.3f} ms")
        print(f"{'tree':8} {'ms/msg':>8} {'pure Python':>12}  results")
        for label, entry in found.items():
            ms = statistics.median(entry["ms"])
            print(f"{label:8} {ms:8.3f} {ms - floor_ms:12.3f}  {entry['results'][:16]}  ({trees[label]})")
        this, other = (statistics.median(found[k]["ms"]) for k in ("this", "against"))
        print(f"this / against: total {this / other:.2f}x, pure Python {(this - floor_ms) / (other - floor_ms):.2f}x; "
              f"results {'identical' if found['this']['results'] == found['against']['results'] else 'DIFFER'}")
        print(f"total, worker pair by pair: {', '.join(f'{r:.2f}x' for r in pair_ratios)} "
              f"(median {statistics.median(pair_ratios):.2f}x)")
        return

    keys = [B.org.pair]
    samples = _time_rounds(lambda m: open_inbound(m, keys, at=at), messages, args.rounds)
    total_ms = statistics.median(samples) * 1000
    print(f"open_inbound {total_ms:.3f} ms/message (rounds: {', '.join(f'{s * 1000:.3f}' for s in samples)})")
    print(f"crypto floor {floor_ms:.3f} ms; pure Python {total_ms - floor_ms:.3f} ms "
          f"({(total_ms - floor_ms) / total_ms:.0%} of the total)")
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for m in messages:
            open_inbound(m, keys, at=at)
        profiler.disable()
        stats = pstats.Stats(profiler)
        stats.sort_stats("tottime").print_stats(args.top)
        stats.sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    main()
