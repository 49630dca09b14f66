"""Whether a token may act on a record, one rule for the app API and FHIR.

A token acts for a person (authorization code, or client credentials
naming a record the client holds an offline grant on) on the records its live
grants cover, and only while that person still holds a role on the record:
removing someone's access to a record stops their apps at once, without
waiting for the grant to be revoked. Writing (adding, reconciling) needs the
custodian role. A client-credentials token for the client itself reaches no record's items.

An unknown record and a record not granted give the same answer, so a token
cannot learn which record ids exist (acceptance item 14: "another record:
empty or 403").
"""

from __future__ import annotations

import enum

from gateway.store import Store

from ..access import can_read, can_write, role
from ..oauth.tokens import Acting, TokenContext
from ..web.refusals import Refusal, Refusals


class Denied(enum.Enum):
    NOT_A_PERSON = "not-a-person"
    """A client-credentials token: it acts for no person, so on no record."""
    NOT_GRANTED = "not-granted"
    """Not a record id, an unknown record, or one the token's grants do not cover."""
    NO_LONGER_PERMITTED = "no-longer-permitted"
    """The person lost their role on the record (or cannot write to it)."""


def count_denied(refusals: Refusals, token: TokenContext, rid: str, denied: Denied) -> None:
    """A token used on a record its grants do not cover is abuse (one client reading
    another's record): counted and logged. A person who lost their role is not."""
    if denied is Denied.NOT_GRANTED:
        refusals.count(Refusal.FOREIGN_GRANT, client=token.client_id, record=rid[:20])


async def record_for(store: Store, token: TokenContext, rid: str, *, write: bool = False) -> int | Denied:
    """The record id ``rid`` names if ``token`` may read (or write) it, else why not."""
    if token.kind is not Acting.USER or token.person_id is None:
        return Denied.NOT_A_PERSON
    if not rid.isdigit() or len(rid) > 18 or not token.allows_record(int(rid)):
        return Denied.NOT_GRANTED
    record_id = int(rid)
    held = await role(store, token.person_id, record_id)
    if not (can_write(held) if write else can_read(held)):
        return Denied.NO_LONGER_PERMITTED
    return record_id


DESCRIPTIONS = {
    Denied.NOT_A_PERSON: ("this call needs a token acting for a person (authorization code, or client credentials "
                          "with record_id), not the client's own"),
    Denied.NOT_GRANTED: "the token does not grant access to that record",
    Denied.NO_LONGER_PERMITTED: "the person the token acts for may not do this on that record",
}
