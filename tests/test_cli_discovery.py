"""``discover``, ``dns`` and ``certs export-ldif`` as a new administrator meets
them, straight after ``init``: the default nameservers and sender domain, a
DNS responder that says where it answers only once it does (and which
address failed when it cannot), and exports that refuse what is not ours."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from gateway.cli.main import main
from gateway.discovery.settings import system_nameservers
from tests import anchor_files
from tests.pki import hisp
from tests.servers.common import free_port

A = hisp("a.test")


@pytest.fixture(name="site")
def site_fixture(tmp_path, monkeypatch, capsys):
    """``directgw init`` done, ``[discovery]`` pointed at a port where nothing answers, quickly."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DIRECTGW_CONFIG", raising=False)
    assert main(["init", "--domain", "a.test"]) == 0
    config = tmp_path / "directgw.toml"
    head = config.read_text().partition("[discovery]")[0]  # the file's last table: replaced
    config.write_text(head + f'[discovery]\nnameservers = ["127.0.0.1:{free_port()}"]\ndns_timeout = 0.2\nldap = false\n')
    (tmp_path / "b.p12").write_bytes(anchor_files.p12(hisp("b.test").org))
    (tmp_path / "pw").write_bytes(b"secret\n")
    os.chmod(tmp_path / "b.p12", 0o600)
    os.chmod(tmp_path / "pw", 0o600)
    (tmp_path / "org.pem").write_bytes(A.org.pem)
    (tmp_path / "org.key").write_bytes(A.org.key_pem())
    os.chmod(tmp_path / "org.key", 0o600)
    capsys.readouterr()
    return tmp_path


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


RESOLV_CONF = {
    "plain": ("nameserver 10.0.0.53\n", ["10.0.0.53:53"]),
    "several-and-options": ("search example\nnameserver 10.0.0.1\noptions ndots:2\nnameserver 10.0.0.2\n",
                            ["10.0.0.1:53", "10.0.0.2:53"]),
    "ipv6-bracketed": ("nameserver ::1\nnameserver fe80::1%eth0\n", ["[::1]:53", "[fe80::1%eth0]:53"]),
    "comments-and-junk": ("# nameserver 10.9.9.9\n; nameserver 10.8.8.8\nnameserver not-an-ip\nnameserver\n", []),
    "duplicates": ("nameserver 10.0.0.1\nnameserver 10.0.0.1\n", ["10.0.0.1:53"]),
    "empty": ("", []),
}


@pytest.mark.parametrize(("text", "expected"), RESOLV_CONF.values(), ids=RESOLV_CONF.keys())
def test_system_nameservers_from_resolv_conf(text, expected):
    assert system_nameservers(text) == expected


def test_init_writes_the_systems_resolvers(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DIRECTGW_CONFIG", raising=False)
    assert main(["init", "--domain", "a.test"]) == 0
    from gateway.cli.discover import system_resolvers
    from gateway.config import load_config

    expected = system_resolvers()
    section = load_config(tmp_path / "directgw.toml").section("discovery")
    if expected:
        assert section == {"nameservers": expected}
        assert "discovery asks the system's resolvers" in capsys.readouterr().out
    else:  # a machine with no resolv.conf: the table is there, commented, and init says so
        assert section == {} and "names no resolver" in capsys.readouterr().out


def test_discover_judges_for_the_only_local_domain(site, capsys):
    code, out, err = run(capsys, "discover", "bob@b.test")
    assert code == 1 and "DO NOT SEND" in out and "temporary" in out  # nobody answers DNS here
    assert "judging for a.test, the only local domain" in err


def test_discover_needs_from_when_there_are_several_domains(site, capsys):
    code, _, err = run(capsys, "domains", "add", "b.test", "--p12", "b.p12", "--password-file", "pw")
    assert code == 0, err
    code, _, err = run(capsys, "discover", "bob@c.test")
    assert code == 2 and err == "directgw: --from DOMAIN is needed: the database holds 2 local domains (a.test, b.test)\n"


def test_discover_with_no_local_domain_says_what_to_do(site, capsys):
    assert run(capsys, "domains", "remove", "a.test")[0] == 0
    code, _, err = run(capsys, "discover", "bob@c.test")
    assert code == 2 and "no local domain to judge for" in err and "--anchor" in err


def test_export_ldif_refuses_a_domain_that_is_not_ours(site, capsys):
    assert run(capsys, "domains", "add", "a.test", "--cert", "org.pem", "--key", "org.key")[0] == 0
    code, out, err = run(capsys, "certs", "export-ldif", "--domain", "unknown.test")
    assert code == 1 and out == ""
    assert err == "directgw: unknown.test: not a local domain (local: a.test)\n"
    code, out, err = run(capsys, "certs", "export-ldif", "--domain", "a.test")
    assert code == 0 and "dn: " in out


def test_export_ldif_with_nothing_to_publish_says_so(site, capsys):
    code, out, err = run(capsys, "certs", "export-ldif")
    assert code == 1 and out == ""
    assert "a.test has no certificate to publish" in err and "nothing to export" in err


def _dns(site, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "gateway.cli.main", "dns", *extra], cwd=site,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_dns_bind_failure_names_the_address_and_never_says_answering(site):
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", port))
        proc = _dns(site, "--listen", f"127.0.0.1:{port}")
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert err.startswith(f"directgw: cannot listen on 127.0.0.1:{port} (UDP and TCP): ")
    assert "answering" not in err and "Traceback" not in err


def test_dns_announces_only_once_it_listens(site):
    port = free_port()
    proc = _dns(site, "--listen", f"127.0.0.1:{port}")
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert line == f"directgw dns: answering for a.test on 127.0.0.1:{port}\n"
        with socket.create_connection(("127.0.0.1", port), timeout=5):  # it really is listening
            pass
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_dns_says_when_it_uses_the_default_address(site):
    """No --listen and no [dns] listen: it says so, then answers on 127.0.0.1:53 or says why it cannot."""
    proc = _dns(site)
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        second = proc.stderr.readline()
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    assert first == "directgw dns: no --listen and no [dns] listen: using the default 127.0.0.1:53\n"
    assert second.startswith(("directgw dns: answering for a.test on 127.0.0.1:53",
                              "directgw: cannot listen on 127.0.0.1:53 (UDP and TCP): ")), second


def test_dns_usage_errors(site, capsys):
    code, _, err = run(capsys, "dns", "--listen", "somewhere")
    assert code == 2 and "--listen 'somewhere': expected ADDRESS:PORT" in err


def test_discover_json_after_init(site, capsys):
    code, out, _ = run(capsys, "discover", "bob@b.test", "--from", "a.test", "--json")
    assert code == 1 and json.loads(out)["send"] is False


NAMESERVER_CHOICE = {
    "option-over-table": (["10.1.1.1"], ["10.2.2.2:53"], ["10.3.3.3:53"], ["10.1.1.1:53"]),
    "table-over-system": ([], ["10.2.2.2:5353"], ["10.3.3.3:53"], ["10.2.2.2:5353"]),
    "system-when-the-table-names-none": ([], None, ["10.3.3.3:53", "[::1]:53"], ["10.3.3.3:53", "[::1]:53"]),
}


@pytest.mark.parametrize(("option", "table", "system", "asked"), NAMESERVER_CHOICE.values(), ids=NAMESERVER_CHOICE.keys())
def test_which_nameservers_discover_asks(tmp_path, option, table, system, asked):
    import argparse

    from gateway.cli.discover import discovery_settings
    from gateway.config import parse_config

    text = "" if table is None else f"[discovery]\nnameservers = {json.dumps(table)}\n"
    config = parse_config(text, tmp_path / "directgw.toml")
    args = argparse.Namespace(nameserver=option, no_ldap=False)
    settings = discovery_settings(args, config, system=lambda: list(system))
    assert [str(s) for s in settings.nameservers] == asked


def test_no_nameserver_anywhere_is_a_usage_error(tmp_path):
    import argparse

    from gateway.cli.args import UsageError
    from gateway.cli.discover import discovery_settings

    with pytest.raises(UsageError, match="no nameserver"):
        discovery_settings(argparse.Namespace(nameserver=[], no_ldap=False), None, system=list)
