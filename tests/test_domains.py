"""Local domains and keys: binding checked on the way in (Direct item 12),
rollover, and picking the key per operation (Direct item 13)."""

import os
from datetime import timedelta

import pytest

from gateway.domains import DomainError, DomainProblem, LocalDomains, check_key_file
from tests.pki import NOW, address_leaf, hisp, org_leaf
from tests.storage_fixtures import store_fixture, store_url_fixture  # noqa: F401 -- fixtures

A = hisp("a.test")
BOB = A.address("bob")
# a rollover: the next domain certificate, valid from a month after NOW
NEXT_ORG = org_leaf(A.intermediate, "a.test", not_before=NOW + timedelta(days=30), not_after=NOW + timedelta(days=800))
BOB_ENCRYPT_ONLY = A.address("bob", digital_signature=False)
CAROL_SIGN_ONLY = A.address("carol", key_encipherment=False)
LEGACY_BOB = address_leaf(A.intermediate, "bob@a.test", email_in_subject=True)


async def test_domain_key_must_name_the_domain(store):
    domains = LocalDomains(store)
    with pytest.raises(DomainError) as err:
        await domains.add_key("b.test", A.org.pair, at=NOW)
    assert err.value.problem is DomainProblem.NOT_BOUND
    assert "not bound to b.test" in str(err.value) and "a.test" in str(err.value)
    with pytest.raises(DomainError, match="no dNSName"):
        await domains.add_key("a.test", BOB.pair, at=NOW)  # an address certificate as the domain's
    assert await domains.all() == []  # nothing half-made


async def test_address_key_must_name_the_address(store):
    domains = LocalDomains(store)
    with pytest.raises(DomainError, match=r"not bound to alice@a\.test"):
        await domains.add_key("a.test", BOB.pair, at=NOW, address="alice@a.test")
    with pytest.raises(DomainError, match=r"not an address of a\.test"):
        await domains.add_key("a.test", BOB.pair, at=NOW, address="bob@b.test")
    rec = await domains.add_key("a.test", LEGACY_BOB.pair, at=NOW, address="Bob@A.test")  # emailAddress in subject
    assert rec.address == "bob@a.test"


async def test_key_ring_signing_and_published_certificates(store):
    domains = LocalDomains(store)
    await domains.add_key("a.test", A.org.pair, at=NOW)
    await domains.add_key("a.test", NEXT_ORG.pair, at=NOW)
    await domains.add_key("a.test", BOB_ENCRYPT_ONLY.pair, at=NOW, address="bob@a.test")
    await domains.add_key("a.test", CAROL_SIGN_ONLY.pair, at=NOW, address="carol@a.test")

    # every key that can decrypt, the rolled-over and not-yet-valid ones included
    ring = await domains.key_ring("A.TEST")
    assert {p.cert for p in ring} == {A.org.ref, NEXT_ORG.ref, BOB_ENCRYPT_ONLY.ref}

    # carol's own certificate signs for her: address-bound before the domain's
    assert (await domains.signing_pair("carol@a.test", NOW)).cert == CAROL_SIGN_ONLY.ref
    # bob's own certificate cannot sign, so the domain's does: the newest valid one
    assert (await domains.signing_pair("bob@a.test", NOW)).cert == A.org.ref
    assert (await domains.signing_pair("BOB@a.test", NOW + timedelta(days=31))).cert == NEXT_ORG.ref
    assert await domains.signing_pair("bob@a.test", NOW + timedelta(days=900)) is None
    assert (await domains.signing_pair("alice@a.test", NOW)).cert == A.org.ref
    assert await domains.signing_pair("bob@b.test", NOW) is None
    # a dual-use certificate for bob: now his own signs
    await domains.add_key("a.test", BOB.pair, at=NOW, address="bob@a.test")
    assert (await domains.signing_pair("bob@a.test", NOW)).cert == BOB.ref

    # what senders may encrypt to (not carol's signing-only certificate)
    published = await domains.published_certificates("a.test")
    assert sorted((owner, c.sha256) for owner, c in published) == sorted(
        [("a.test", A.org.ref.sha256), ("a.test", NEXT_ORG.ref.sha256), ("bob.a.test", BOB.ref.sha256),
         ("bob.a.test", BOB_ENCRYPT_ONLY.ref.sha256)]
    )
    assert NEXT_ORG.ref not in [c for _, c in await domains.published_certificates("a.test", at=NOW)]


async def test_list_duplicate_and_remove(store):
    domains = LocalDomains(store)
    assert await domains.create("a.test", at=NOW) is True
    assert await domains.create("A.test.", at=NOW) is False
    await domains.add_key("a.test", A.org.pair, at=NOW)
    with pytest.raises(DomainError) as err:
        await domains.add_key("a.test", A.org.pair, at=NOW)
    assert err.value.problem is DomainProblem.DUPLICATE
    [listed] = await domains.all()
    assert listed.name == "a.test" and [k.certificate for k in listed.keys] == [A.org.ref]
    assert listed.keys[0].can_sign and listed.keys[0].can_encrypt
    await domains.remove("a.test")
    assert await domains.all() == []
    assert await domains.key_ring("a.test") == []


def test_key_files_readable_by_others_refused(tmp_path):
    key = tmp_path / "org.key"
    key.write_bytes(A.org.key_pem())
    os.chmod(key, 0o600)
    check_key_file(key)
    os.chmod(key, 0o640)
    with pytest.raises(DomainError) as err:
        check_key_file(key)
    assert err.value.problem is DomainProblem.KEY_FILE_EXPOSED
    assert "0640" in str(err.value) and "chmod 600" in str(err.value)
