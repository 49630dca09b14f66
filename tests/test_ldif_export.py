"""``export_ldif`` output loads into a real slapd (slapadd parses it), and
discovery's LDAP reader finds the certificates in it again."""

from __future__ import annotations

import pytest

from gateway.discovery import LdapServer, Outcome
from gateway.discovery.ldapsource import Ldap3Directory
from gateway.discovery.ldif import export_ldif

from .pki import address_leaf, org_leaf, root
from .servers.slapd import SlapdServer

pytestmark = pytest.mark.interop


async def test_exported_ldif_round_trips_through_slapd(tmp_path):
    r = root("LDIF Export Root")
    bob_old, bob_new = address_leaf(r, "bob@x.test"), address_leaf(r, "bob@x.test")
    org = org_leaf(r, "x.test")
    ldif = export_ldif("x.test", [bob_old.ref, bob_new.ref, org.ref], base="ou=people,dc=test")
    server = SlapdServer(tmp_path, [ldif]).start()
    try:
        directory = Ldap3Directory(timeout=2.0)
        target = LdapServer("127.0.0.1", server.port)
        bob = await directory.certificates(target, "bob@x.test")
        domain = await directory.certificates(target, "x.test")
        nobody = await directory.certificates(target, "carol@x.test")
    finally:
        server.stop()
    assert bob.outcome is Outcome.FOUND and set(bob.certificates) == {bob_old.ref, bob_new.ref}
    assert domain.certificates == (org.ref,)
    assert nobody.outcome is Outcome.NO_SUCH_NAME
