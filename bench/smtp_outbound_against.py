"""Two source trees' sending paths side by side: which pair of gateways seals, delivers and acknowledges with less CPU.

    .venv/bin/python bench/smtp_outbound_against.py DIR [--batches 10] [--batch 150] [--clients 8]

DIR is another tree of this project (``git worktree add /tmp/base HEAD~3``).
Two pairs of gateways run, A and B as in bench/smtp_outbound.py, one pair
from DIR and one from this tree, each with its own sites and databases and
the EHR's inbox shared. Then ``--batches`` times a batch of submissions goes
to each pair's A in turn, in alternating order, while the other pair is
stopped (SIGSTOP); each gateway's CPU (from /proc) and the wall time to the
last ``processed`` MDN in the inbox are summed over its own pair's batches.
Run one after the other, two runs of bench/smtp_outbound.py on one tree gave
A 6.6 and 8.3 ms of CPU a message; interleaved in batches of a few seconds,
both trees see the same slow and fast spells, and the ratios printed last are
what to compare.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.smtp_inbound import cli, free_port
from bench.smtp_outbound import (
    ACCOUNT,
    PASSWORD,
    PATIENT,
    A,
    B,
    Inbox,
    Node,
    Run,
    Server,
    configure,
    paused,
    plain,
    serve,
    start_inbox,
    submit,
)


def pair(root: Path, inbox_port: int, tree: Path | None) -> tuple[Node, Node, Server, Server]:
    a = Node(A, root / "a", free_port(), free_port(), free_port())
    b = Node(B, root / "b", free_port(), free_port(), free_port())
    for node in (a, b):
        node.root.mkdir(parents=True)
    configure(a, b, inbox_port, tree)
    configure(b, a, None, tree)
    (a.root / "password").write_text(PASSWORD + "\n")
    cli(a.root, "accounts", "add", ACCOUNT, "--domain", "a.test", "--password-file", "password", tree=tree)
    cli(b.root, "records", "create", "--name", "Pat", "--address", PATIENT, tree=tree)
    return a, b, serve(a, 1, tree), serve(b, 1, tree)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("against", type=Path, help="the other source tree")
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--batch", type=int, default=150)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    base = str(args.against)
    trees: dict[str, Path | None] = {base: args.against.resolve(), "this tree": None}
    scratch = Path(tempfile.mkdtemp(prefix="directgw-bench-against-"))
    inbox = Inbox()
    controller, inbox_port = start_inbox(inbox)
    pairs: dict[str, tuple[Node, Node, Server, Server]] = {}
    runs: dict[str, list[Run]] = {name: [] for name in trees}
    wall: dict[str, float] = dict.fromkeys(trees, 0.0)
    numbers = iter(range(10**9))
    try:
        for i, (name, tree) in enumerate(trees.items()):
            pairs[name] = pair(scratch / str(i), inbox_port, tree)
        for name, (a, _b, _server_a, _server_b) in pairs.items():
            others = [s for n, p in pairs.items() if n != name for s in p[2:]]
            with paused(*others):
                warm = [plain(next(numbers)) for _ in range(2 * args.clients)]
                if submit("warm-up", a.submission, inbox, warm, args.clients).missing:
                    raise SystemExit(f"{name}: the warm-up's MDNs never came back; logs in {scratch}")
        for n in range(args.batches):
            order = list(pairs.items())
            for name, (a, _b, server_a, server_b) in order if n % 2 == 0 else order[::-1]:
                others = [s for other, p in pairs.items() if other != name for s in p[2:]]
                batch = [plain(next(numbers)) for _ in range(args.batch)]
                with paused(*others):
                    run = submit(name, a.submission, inbox, batch, args.clients, server_a, server_b)
                if run.missing or run.refused:
                    raise SystemExit(f"{name}: {run.missing} MDNs missing, {run.refused} refused; logs in {scratch}")
                runs[name].append(run)
                wall[name] += run.count / run.rate
    finally:
        for p in pairs.values():
            for server in p[2:]:
                server.stop()
        controller.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    count = args.batches * args.batch

    def mean(name: str, field: str) -> float:
        return sum(getattr(r, field) * r.count for r in runs[name]) / count

    for name in trees:
        print(f"{name:>30}: {count / wall[name]:6.1f} per s to processed, CPU per message "
              f"A {mean(name, 'cpu_a'):5.2f} B {mean(name, 'cpu_b'):5.2f} load {mean(name, 'cpu_load'):4.2f} ms")
    print(f"this tree / {base}: rate {wall[base] / wall['this tree']:.3f}x, CPU per message "
          f"A {mean('this tree', 'cpu_a') / mean(base, 'cpu_a'):.3f}x, B {mean('this tree', 'cpu_b') / mean(base, 'cpu_b'):.3f}x "
          f"({args.clients} clients, {count} submissions each)")


if __name__ == "__main__":
    main()
