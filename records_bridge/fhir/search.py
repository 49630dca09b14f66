"""DocumentReference search parameters (spec section 7), parsed into a typed request.

``patient`` (required: the facade serves patient-compartment searches only,
SMART ``patient/`` scopes), ``type`` (token: ``system|code`` or ``code``,
comma = or), ``date`` (R4 section 3.1.1.4.2 prefixes eq, ge, gt, le, lt;
repeatable, each narrowing), ``_count`` and the page cursor ``_cursor``.
A date without a zone is read as UTC. Parameters the facade does not know
are ignored, as R4 section 3.1.1.4 asks of a lenient server, and the self
link shows only what was applied.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ..api.items import DOCUMENT_TYPES
from ..types import ItemType
from .resources import LOINC, type_code

DEFAULT_COUNT = 50
MAX_COUNT = 200
"""A searchset page: 50 by default; 200 documents' metadata is ~200 KB of JSON."""

_CODE_TYPES: dict[str, frozenset[ItemType]] = {
    code: frozenset(kind for kind in DOCUMENT_TYPES if type_code(kind)[0] == code)
    for code in {type_code(kind)[0] for kind in DOCUMENT_TYPES}
}
"""LOINC code -> the item types shown with it (51899-3: file, cda, ccr)."""


@dataclass(frozen=True, slots=True)
class Search:
    patient: str
    types: frozenset[ItemType] | None
    since: datetime | None
    before: datetime | None
    count: int
    cursor: int | None
    applied: tuple[tuple[str, str], ...]
    """The parameters used, in order: what the self link says."""


@dataclass(frozen=True, slots=True)
class SearchError:
    diagnostics: str


_DATE = re.compile(
    r"(eq|ge|gt|le|lt)?(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?"
)


def _period(value: str) -> tuple[str, datetime, datetime] | None:
    """The prefix and the [start, end) the value's precision denotes."""
    m = _DATE.fullmatch(value)
    if m is None:
        return None
    prefix, year, month, day, hour, minute, second, zone = m.groups()
    try:
        if hour is None:
            start = datetime(int(year), int(month or 1), int(day or 1), tzinfo=UTC)
            if day:
                end = start + timedelta(days=1)
            elif month:
                end = datetime(start.year + (start.month == 12), start.month % 12 + 1, 1, tzinfo=UTC)
            else:
                end = datetime(start.year + 1, 1, 1, tzinfo=UTC)
        else:
            tz = UTC if zone in (None, "Z") else datetime.strptime(zone.replace(":", ""), "%z").tzinfo
            start = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second or 0), tzinfo=tz)
            end = start + timedelta(seconds=1 if second else 60)
    except (ValueError, OverflowError):
        return None
    return prefix or "eq", start, end


def parse(params: Iterable[tuple[str, str]]) -> Search | SearchError:
    patient: str | None = None
    types: frozenset[ItemType] | None = None
    since: datetime | None = None
    before: datetime | None = None
    count = DEFAULT_COUNT
    cursor: int | None = None
    applied: list[tuple[str, str]] = []
    for name, value in params:
        if name in ("patient", "subject", "patient:Patient", "subject:Patient"):
            ref = value.removeprefix("Patient/")
            if not ref or (patient is not None and ref != patient):
                return SearchError(f"{name}: one patient per search")
            patient = ref
            applied.append(("patient", ref))
        elif name == "type":
            wanted: set[ItemType] = set()
            for token in value.split(","):
                system, bar, code = token.rpartition("|")
                if bar and system not in ("", LOINC):
                    continue  # a code system we never use matches nothing
                wanted |= _CODE_TYPES.get(code, frozenset())
            types = frozenset(wanted) if types is None else types & wanted
            applied.append((name, value))
        elif name == "date":
            period = _period(value)
            if period is None:
                return SearchError(f"date={value}: expected [eq|ge|gt|le|lt]YYYY[-MM[-DD[Thh:mm[:ss][zone]]]]")
            prefix, start, end = period
            low, high = {"eq": (start, end), "ge": (start, None), "gt": (end, None),
                         "lt": (None, start), "le": (None, end)}[prefix]
            if low is not None:
                since = low if since is None else max(since, low)
            if high is not None:
                before = high if before is None else min(before, high)
            applied.append((name, value))
        elif name == "_count":
            if not value.isdigit() or len(value) > 6:
                return SearchError(f"_count={value}: expected a whole number")
            count = min(int(value), MAX_COUNT)
            applied.append((name, str(count)))
        elif name == "_cursor":
            if not value.isdigit() or len(value) > 18:
                return SearchError("_cursor: not a cursor this server gave")
            cursor = int(value)
    if patient is None:
        return SearchError("patient is required: this server answers searches within one patient's record")
    return Search(patient, types, since, before, count, cursor, tuple(applied))
