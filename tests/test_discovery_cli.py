"""The commands end to end on a real SQLite database: ``directgw dns`` serves
what LocalDomains holds (answering kdig), ``directgw discover`` finds it and
judges it against the sender domain's outgoing anchors in the database, and
``directgw certs export-ldif`` output loads into slapd where discovery's LDAP
reader finds it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from anchors.source import Direction
from anchors.store import DbAnchors
from gateway.cli.main import main
from gateway.config import load_config
from gateway.discovery import LdapServer, Outcome
from gateway.discovery.ldapsource import Ldap3Directory
from gateway.domains import LocalDomains
from gateway.store import open_store

from .pki import NOW, address_leaf, org_leaf, root
from .servers.common import free_port, require_server_binary, wait_until
from .servers.slapd import SlapdServer

pytestmark = pytest.mark.interop

DOMAIN = "cli.test"
SENDER = "sender.test"


@pytest.fixture(scope="module")
def gateway_config(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli")
    anchor = root("CLI Root")
    bob, org = address_leaf(anchor, f"bob@{DOMAIN}"), org_leaf(anchor, DOMAIN)
    port = free_port()
    path = base / "directgw.toml"
    path.write_text(
        'data_dir = "data"\n'
        f'[dns]\nlisten = "127.0.0.1:{port}"\n'  # no zones: every local domain in the database

        f'[discovery]\nnameservers = ["127.0.0.1:{port}"]\nldap = false\ndns_timeout = 0.5\n'
    )

    async def fill() -> None:
        config = load_config(path)
        config.data_dir.mkdir(parents=True, exist_ok=True)
        store = await open_store(config.storage_url)
        try:
            domains = LocalDomains(store)
            await domains.add_key(DOMAIN, bob.pair, at=NOW, address=f"bob@{DOMAIN}")
            await domains.add_key(DOMAIN, org.pair, at=NOW)
            await domains.create(SENDER, at=NOW)
            await DbAnchors(store).add(SENDER, [Direction.OUTGOING], [anchor.ref], at=NOW)
        finally:
            await store.close()

    asyncio.run(fill())
    return {"path": path, "port": port, "bob": bob, "org": org}


def test_dns_command_serves_the_database_and_discover_finds_it(gateway_config, capsys):
    kdig = require_server_binary("kdig")
    port = gateway_config["port"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli.main", "dns", "--config", str(gateway_config["path"])],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        def answers() -> bool:
            out = subprocess.run([kdig, "-p", str(port), "@127.0.0.1", f"bob.{DOMAIN}", "CERT", "+tcp", "+short"],
                                 capture_output=True, text=True)
            return out.returncode == 0 and out.stdout.startswith("1 0 0 ")  # type PKIX, key tag 0, algorithm 0

        wait_until(answers, "directgw dns")
        code = main(["discover", f"bob@{DOMAIN}", "--config", str(gateway_config["path"]), "--from", SENDER,
                     "--at", NOW.isoformat(), "--json"])
        printed = capsys.readouterr().out
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stderr.close()
    out = json.loads(printed)
    assert code == 0, printed
    assert [c["sha256"] for c in out["selected"]] == [gateway_config["bob"].ref.sha256]
    assert out["binding"] == "address" and out["source"] == "dns"


def test_discover_without_a_server_says_do_not_send(gateway_config, capsys):
    code = main(["discover", f"bob@{DOMAIN}", "--nameserver", f"127.0.0.1:{free_port()}", "--config",
                 str(gateway_config["path"]), "--from", SENDER, "--at", NOW.isoformat()])
    text = capsys.readouterr().out
    assert code == 1
    assert "DO NOT SEND" in text and "temporary" in text and "timed out" in text


def test_export_ldif_loads_into_slapd(gateway_config, tmp_path, capsys):
    code = main(["certs", "export-ldif", "--config", str(gateway_config["path"]), "--base", "ou=people,dc=test"])
    ldif = capsys.readouterr().out
    assert code == 0 and f"mail: bob@{DOMAIN}" in ldif
    server = SlapdServer(tmp_path, [ldif]).start()
    try:
        directory = Ldap3Directory(timeout=2.0)
        bob = asyncio.run(directory.certificates(LdapServer("127.0.0.1", server.port), f"bob@{DOMAIN}"))
        org = asyncio.run(directory.certificates(LdapServer("127.0.0.1", server.port), DOMAIN))
    finally:
        server.stop()
    assert bob.outcome is Outcome.FOUND and bob.certificates == (gateway_config["bob"].ref,)
    assert org.certificates == (gateway_config["org"].ref,)
