"""The order in which to try the LDAP servers an SRV record set names (RFC 2782).

Lowest priority first. Within one priority, servers are drawn by weight: put
the weight-0 ones first, draw a number between 0 and the sum of the weights,
take the first server whose running sum reaches it, and repeat with the rest.
The draw is injectable so tests are deterministic.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import groupby

Draw = Callable[[int, int], int]
"""``draw(low, high)``: an integer with low <= n <= high (``random.randint``'s shape)."""

_system = random.SystemRandom()


@dataclass(frozen=True, slots=True)
class SrvTarget:
    priority: int
    weight: int
    port: int
    host: str

    def __str__(self) -> str:
        return f"{self.host}:{self.port} (priority {self.priority}, weight {self.weight})"


def rfc2782_order(targets: Iterable[SrvTarget], draw: Draw = _system.randint) -> list[SrvTarget]:
    # RFC 2782: a target of "." means the service is decidedly not available
    usable = [t for t in targets if t.host not in (".", "")]
    ordered: list[SrvTarget] = []
    for _, group in groupby(sorted(usable, key=lambda t: t.priority), key=lambda t: t.priority):
        pending = sorted(group, key=lambda t: t.weight != 0)  # weight 0 first, otherwise as given
        while pending:
            total = sum(t.weight for t in pending)
            pick = draw(0, total)
            running = 0
            for index, target in enumerate(pending):
                running += target.weight
                if running >= pick:
                    ordered.append(pending.pop(index))
                    break
    return ordered
