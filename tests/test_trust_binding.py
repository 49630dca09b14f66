"""Direct item 12, the binding of a certificate to the sender, as a table.

The legacy subject emailAddress binds only a certificate without any
subjectAltName extension (RFC 5280 sections 4.2.1.6 and 4.2.1.10: with a SAN,
a CA's rfc822Name constraints do not reach the subject's emailAddress, so a
constrained CA could otherwise issue a certificate for any address).
"""

from __future__ import annotations

import pytest

from trust.direct import bound_addresses, check_binding
from trust.types import Check

from . import pki

CA = pki.intermediate(pki.root("Binding Root"), "Binding CA")

# name: (issue() keywords, sender, binds)
VECTORS = {
    "san-rfc822name": (dict(email="alice@a.test"), "alice@a.test", True),
    "san-rfc822name-case": (dict(email="Alice@A.test"), "alice@a.test", True),
    "san-names-someone-else": (dict(email="carol@a.test"), "alice@a.test", False),
    "legacy-subject-email-without-san": (dict(email="alice@a.test", email_in_subject=True), "alice@a.test", True),
    "subject-email-beside-a-san-binds-nothing": (
        dict(email="alice@a.test", email_in_subject=True, dns="other.test"),
        "alice@a.test",
        False,
    ),
    "org-bound-dnsname": (dict(dns="a.test"), "alice@a.test", True),
    "org-bound-other-domain": (dict(dns="b.test"), "alice@a.test", False),
    "subject-email-beside-an-org-san-binds-only-the-domain": (
        dict(email="mallory@evil.test", email_in_subject=True, dns="a.test"),
        "mallory@evil.test",
        False,
    ),
}


@pytest.mark.parametrize(("kw", "sender", "binds"), list(VECTORS.values()), ids=list(VECTORS))
def test_binding(kw, sender, binds):
    cert = pki.issue("leaf", issuer=CA, **kw).ref
    failure = check_binding(cert, sender)
    if binds:
        assert failure is None
    else:
        assert failure is not None and failure.check is Check.BINDING
        assert sender in failure.detail


def test_bound_addresses_say_what_binds():
    with_san = pki.issue("leaf", issuer=CA, email="alice@a.test", email_in_subject=True, dns="x.test").ref
    assert bound_addresses(with_san) == ()
    legacy = pki.issue("leaf", issuer=CA, email="Alice@a.test", email_in_subject=True).ref
    assert bound_addresses(legacy) == ("alice@a.test",)


@pytest.mark.parametrize(("kw", "sender", "binds"), list(VECTORS.values()), ids=list(VECTORS))
def test_every_reader_of_a_certificates_addresses_sees_what_binds(kw, sender, binds):
    """Discovery, publishing, the admin's key checks and seal's warning read
    ``CertRef.email_addresses``: the same rule as the inbound binding."""
    cert = pki.issue("leaf", issuer=CA, **kw).ref
    assert cert.email_addresses == bound_addresses(cert)
    assert (sender in cert.email_addresses or sender.rpartition("@")[2] in cert.dns_names) is binds
