"""The administrator's commands end to end, through ``directgw``'s own
``main`` in a temporary directory, on both databases: ``init``, then
``domains add``, ``anchors add``, ``anchors list --json``, bundles served by
a real HTTP server on loopback, and the failures an administrator meets
(one line on stderr, exit 1, never a traceback)."""

import json
import os
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from gateway.cli.main import main
from tests import anchor_files as files
from tests.pki import hisp, issue
from tests.storage_fixtures import store_url_fixture  # noqa: F401 -- fixture

A, B = hisp("a.test"), hisp("b.test")
SIGNER = issue("Bundle signer")


@pytest.fixture(name="site")
def site_fixture(tmp_path, monkeypatch):
    """A working directory with certificate and key files as an admin has them."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DIRECTGW_CONFIG", raising=False)
    for name, data in {
        "org.pem": A.org.pem, "org.key": A.org.key_pem(), "bob.pem": A.address("bob").pem,
        "root.pem": A.root.pem, "b-roots.p7b": files.p7b(B.root, B.intermediate), "signer.pem": SIGNER.pem,
        "org.p12": files.p12(A.org), "pw": b"secret\n",
    }.items():
        (tmp_path / name).write_bytes(data)
    bob = A.address("bob")
    (tmp_path / "bob.pem").write_bytes(bob.pem)
    (tmp_path / "bob.key").write_bytes(bob.key_pem())
    for key in ("org.key", "bob.key", "org.p12", "pw"):
        os.chmod(tmp_path / key, 0o600)
    return tmp_path


class Bundle(BaseHTTPRequestHandler):
    """Serves ``files`` by path; 404 otherwise. Threaded, because each CLI
    command runs its own event loop to completion."""

    files: ClassVar[dict[str, bytes]] = {}

    def do_GET(self):
        body = self.files.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *args):
        pass


@pytest.fixture(name="web")
def web_fixture():
    Bundle.files = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), Bundle)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Bundle.files, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def init(capsys, store_url):
    args = ["init", "--domain", "a.test"]
    if store_url.startswith("postgresql"):
        args += ["--storage-url", store_url]
    code, out, err = run(capsys, *args)
    assert code == 0, err
    return out


def test_init_domains_anchors_end_to_end(site, capsys, store_url):
    out = init(capsys, store_url)
    assert "directgw.toml" in out and (site / "directgw.toml").is_file()
    if store_url.startswith("sqlite"):
        assert (site / "data" / "directgw.db").is_file()
        assert oct((site / "data").stat().st_mode & 0o777) == "0o700"

    code, out, err = run(capsys, "domains", "add", "a.test", "--cert", "org.pem", "--key", "org.key")
    assert code == 0, err
    assert "signing+encryption" in out
    code, out, err = run(capsys, "domains", "add-address", "bob@a.test", "--cert", "bob.pem", "--key", "bob.key")
    assert code == 0, err
    code, out, err = run(capsys, "domains", "add", "a.test", "--p12", "org.p12", "--password-file", "pw")
    assert code == 1 and "already a key of a.test" in err  # the same certificate, from a PKCS#12 file

    code, out, err = run(capsys, "anchors", "add", "--domain", "a.test", "--direction", "incoming", "root.pem", "b-roots.p7b")
    assert code == 0, err
    code, out, err = run(capsys, "anchors", "add", "--domain", "a.test", "--direction", "outgoing", "b-roots.p7b")
    assert code == 0, err

    code, out, err = run(capsys, "anchors", "list", "--json")
    assert code == 0, err
    listed = json.loads(out)
    assert sorted((a["direction"], a["subject"]) for a in listed) == sorted(
        [("incoming", A.root.ref.subject), ("incoming", B.root.ref.subject), ("incoming", B.intermediate.ref.subject),
         ("outgoing", B.root.ref.subject), ("outgoing", B.intermediate.ref.subject)]
    )
    assert {a["domain"] for a in listed} == {"a.test"} and {a["source"] for a in listed} == {"manual"}

    code, out, err = run(capsys, "domains", "list", "--json")
    [domain] = json.loads(out)
    assert domain["domain"] == "a.test"
    assert sorted(str(k["address"]) for k in domain["keys"]) == ["None", "bob@a.test"]

    first = listed[0]["id"]
    code, out, err = run(capsys, "anchors", "remove", first)
    assert code == 0 and "removed" in out
    code, out, err = run(capsys, "anchors", "remove", first)
    assert code == 1 and err.strip() == f"directgw: no anchor with id {first}"

    code, out, err = run(capsys, "domains", "remove", "a.test")
    assert code == 0
    code, out, err = run(capsys, "anchors", "list", "--json")
    assert json.loads(out) == []


def test_bundles_through_the_cli(site, capsys, web, store_url):
    served, base = web
    init(capsys, store_url)
    served["/community.p7m"] = files.p7m(files.p7b(B.root), SIGNER)
    code, out, err = run(capsys, "bundles", "add", f"{base}/community.p7m", "--domain", "a.test",
                         "--direction", "incoming", "--refresh", "30m", "--signer", "signer.pem")
    assert code == 0, err
    assert out.startswith("added bundle 1 for a.test: ") and "1 certificates (updated)" in out

    served["/community.p7m"] = b"<html>gone</html>"
    code, out, err = run(capsys, "bundles", "refresh")
    assert code == 1
    assert "invalid-format" in err and "keeping the last good copy, 1 certificates" in err

    code, out, err = run(capsys, "bundles", "list", "--json")
    [bundle] = json.loads(out)
    assert bundle["last_status"] == "invalid-format" and bundle["certificates"] == 1
    assert bundle["refresh_seconds"] == 1800 and bundle["signer"] == SIGNER.ref.subject
    code, out, err = run(capsys, "anchors", "list", "--json")
    assert [a["subject"] for a in json.loads(out)] == [B.root.ref.subject]

    code, out, err = run(capsys, "bundles", "add", f"{base}/missing.p7b", "--domain", "a.test")
    assert code == 1 and "not added: not-found" in err
    assert out == ""  # "added" is said only of a bundle that fetched
    code, out, err = run(capsys, "bundles", "list", "--json")
    assert [b["url"] for b in json.loads(out)] == [f"{base}/community.p7m"]  # the failed add left nothing


WRONG = {
    "private key": (["anchors", "add", "--domain", "a.test", "org.key"], "this is a private key"),
    "unbound cert": (["domains", "add", "b.test", "--cert", "org.pem", "--key", "org.key"], "not bound to b.test"),
    "unknown domain": (["anchors", "add", "--domain", "c.test", "root.pem"], "c.test is not a local domain"),
    "missing file": (["anchors", "add", "--domain", "a.test", "nope.pem"], "cannot read nope.pem"),
    "wrong key": (["domains", "add", "a.test", "--cert", "org.pem", "--key", "bob.key"], "does not belong"),
    "bad interval": (["bundles", "add", "http://x.test/b", "--domain", "a.test", "--refresh", "soon"], "--refresh"),
    "huge interval": (["bundles", "add", "http://x.test/b", "--domain", "a.test", "--refresh", "99999999999d"], "--refresh"),
    "long interval": (["bundles", "add", "http://x.test/b", "--domain", "a.test", "--refresh", "31d"], "30 days"),
    "bad url": (["bundles", "add", "http://[::1", "--domain", "a.test"], "not a URL"),
    "url without host": (["bundles", "add", "http:///b.p7b", "--domain", "a.test"], "with a host"),
    "missing key": (["domains", "add", "a.test", "--cert", "org.pem", "--key", "nope.key"], "cannot read nope.key"),
    "missing p12": (["domains", "add", "a.test", "--p12", "nope.p12"], "cannot read nope.p12"),
    "signer not a cert": (
        ["anchors", "add", "--domain", "a.test", "--signer", "org.key", "root.pem"], "--signer org.key: "
    ),
    "cert not a cert": (["domains", "add", "a.test", "--cert", "org.key", "--key", "org.key"], "--cert org.key: "),
}


@pytest.mark.parametrize(("argv", "message"), WRONG.values(), ids=WRONG.keys())
def test_errors_are_one_line(site, capsys, argv, message):
    assert run(capsys, "init", "--domain", "a.test")[0] == 0
    code, _, err = run(capsys, *argv)
    assert code in (1, 2)
    assert message in err
    assert err.count("\n") == 1 and err.startswith("directgw: ")


def test_usage_errors_come_before_the_configuration(site, capsys):
    """No config file exists: a bad argument is still reported as what it is, exit 2."""
    code, _, err = run(capsys, "bundles", "add", "http://x.test/b", "--domain", "a.test", "--refresh", "soon")
    assert code == 2 and "--refresh" in err
    code, _, err = run(capsys, "anchors", "add", "--domain", "not a domain", "root.pem")
    assert code == 2 and "is not a domain name" in err
    code, _, err = run(capsys, "domains", "add-address", "nobody", "--cert", "bob.pem", "--key", "bob.key")
    assert code == 2 and "not an address" in err


def test_exposed_key_file_refused(site, capsys):
    run(capsys, "init", "--domain", "a.test")
    os.chmod(site / "org.key", 0o644)
    code, _, err = run(capsys, "domains", "add", "a.test", "--cert", "org.pem", "--key", "org.key")
    assert code == 1 and "readable by group or others" in err


def test_config_from_environment_and_missing_config(site, capsys, monkeypatch):
    code, _, err = run(capsys, "anchors", "list")
    assert code == 1 and "directgw init" in err
    monkeypatch.setenv("DIRECTGW_CONFIG", str(site / "etc" / "gw.toml"))
    assert run(capsys, "init", "--domain", "a.test")[0] == 0
    assert (site / "etc" / "data" / "directgw.db").is_file()
    code, out, _ = run(capsys, "domains", "list")
    assert code == 0 and "a.test" in out
    code, _, err = run(capsys, "init", "--domain", "a.test")
    assert code == 1 and "already exists" in err


def test_keys_from_pkcs12_and_der(site, capsys):
    b = hisp("b.test")
    (site / "b.p12").write_bytes(files.p12(b.org))
    bob = b.address("bob")
    (site / "bob.der").write_bytes(bob.der)
    (site / "bob-key.der").write_bytes(bob.key_der())
    for name in ("b.p12", "bob-key.der"):
        os.chmod(site / name, 0o600)
    run(capsys, "init", "--domain", "a.test")
    code, out, err = run(capsys, "domains", "add", "b.test", "--p12", "b.p12", "--password-file", "pw")
    assert code == 0, err
    code, out, err = run(capsys, "domains", "add-address", "bob@b.test", "--cert", "bob.der", "--key", "bob-key.der")
    assert code == 0, err
    code, out, err = run(capsys, "domains", "add", "b.test", "--p12", "b.p12")
    assert code == 1 and "PKCS#12" in err  # no password given
    code, out, _ = run(capsys, "domains", "list", "--json")
    assert {d["domain"]: len(d["keys"]) for d in json.loads(out)} == {"a.test": 0, "b.test": 2}


def test_init_refuses_a_bad_storage_url_before_writing(site, capsys):
    code, _, err = run(capsys, "init", "--domain", "a.test", "--storage-url", "mysql://db/x")
    assert code == 1 and "storage.url" in err
    assert not (site / "directgw.toml").exists()


def test_a_certificate_not_yet_valid_is_stored_with_a_warning(site, capsys):
    later = A.address("carol", not_before=datetime.now(UTC) + timedelta(days=30),
                      not_after=datetime.now(UTC) + timedelta(days=400))
    (site / "carol.pem").write_bytes(later.pem)
    (site / "carol.key").write_bytes(later.key_pem())
    os.chmod(site / "carol.key", 0o600)
    run(capsys, "init", "--domain", "a.test")
    code, out, err = run(capsys, "domains", "add-address", "carol@a.test", "--cert", "carol.pem", "--key", "carol.key")
    assert code == 0 and "added key" in out
    assert err.startswith("warning: ") and "not valid now" in err


def test_signed_bundle_file_with_signer(site, capsys):
    (site / "community.p7m").write_bytes(files.p7m(files.p7b(B.root), SIGNER))
    (site / "other.p7m").write_bytes(files.p7m(files.p7b(B.root), hisp("c.test").org))
    run(capsys, "init", "--domain", "a.test")
    code, _, err = run(capsys, "anchors", "add", "--domain", "a.test", "--signer", "signer.pem", "other.p7m")
    assert code == 1 and "not by the configured signer" in err
    code, out, err = run(capsys, "anchors", "add", "--domain", "a.test", "--direction", "outgoing",
                         "--signer", "signer.pem", "community.p7m")
    assert code == 0 and err == ""
    code, out, _ = run(capsys, "anchors", "list", "--domain", "a.test", "--json")
    assert [(a["direction"], a["subject"]) for a in json.loads(out)] == [("outgoing", B.root.ref.subject)]


def test_a_failed_init_leaves_no_configuration_and_the_retry_works(site, capsys):
    """The database is reached before the configuration is written: a refused init can simply be run again."""
    from tests.servers.common import free_port

    unreachable = f"postgresql+asyncpg://directgw@127.0.0.1:{free_port()}/directgw"
    code, out, err = run(capsys, "init", "--domain", "a.test", "--storage-url", unreachable)
    assert code == 1 and err.startswith("directgw: ") and out == ""
    assert not (site / "directgw.toml").exists()
    assert [p.name for p in site.iterdir() if p.name.startswith(".directgw")] == []  # no temporary file either
    code, out, err = run(capsys, "init", "--domain", "a.test")
    assert code == 0, err
    assert (site / "directgw.toml").is_file() and oct((site / "directgw.toml").stat().st_mode & 0o777) == "0o644"


def test_init_never_replaces_a_configuration(site, capsys):
    (site / "directgw.toml").write_text("# mine\n")
    code, _, err = run(capsys, "init", "--domain", "a.test")
    assert code == 1 and "already exists" in err
    assert (site / "directgw.toml").read_text() == "# mine\n"


@pytest.mark.parametrize(("argv", "said"), [
    (["bundles", "refresh"], "no bundles to refresh (directgw bundles add URL --domain D)\n"),
    (["bundles", "refresh", "--due"], "no bundle is due for a refresh\n"),
], ids=["refresh", "refresh-due"])
def test_refreshing_no_bundles_says_so(site, capsys, argv, said):
    run(capsys, "init", "--domain", "a.test")
    code, out, err = run(capsys, *argv)
    assert (code, out, err) == (0, said, "")
