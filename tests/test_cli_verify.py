"""``directgw verify`` as an administrator runs it: offline, exactly the anchors and CRLs given."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from gateway.cli.main import main
from gateway.core import Sealed, SealOptions, seal_outbound

from . import messages, smime
from .pki import NOW, Issued, issue
from .trust_pki import crl, role_key


@pytest.fixture
def files(tmp_path):
    root = issue("Verify Root CA", ca=True, key=role_key("root"))
    inter = issue("Verify Intermediate CA", issuer=root, ca=True, key=role_key("inter"))
    alice = issue("alice@a.test", issuer=inter, email="alice@a.test", key=role_key("alice"))
    bob = issue("bob@b.test", issuer=inter, email="bob@b.test", key=role_key("bob"))
    cdp = issue("dana@a.test", issuer=inter, email="dana@a.test", key=role_key("leaf2"), crl_urls=("http://crl.a.test/i.crl",))
    other = issue("Other Root CA", ca=True, key=role_key("other-root"))
    for name, c in (("root", root), ("inter", inter), ("other", other), ("bob", bob)):
        (tmp_path / f"{name}.pem").write_bytes(c.pem)
    (tmp_path / "bob.key").write_bytes(bob.key_pem())
    (tmp_path / "revoking.crl").write_bytes(crl(inter, [alice]))
    (tmp_path / "clean.crl").write_bytes(crl(inter))
    (tmp_path / "signed.eml").write_bytes(_signed(alice, inter))
    (tmp_path / "signed-cdp.eml").write_bytes(_signed(cdp, inter, sender="dana@a.test"))
    (tmp_path / "liar.eml").write_bytes(_signed(alice, inter, sender="mallory@a.test"))
    (tmp_path / "signed-nochain.eml").write_bytes(_signed(alice, None))
    sealed = seal_outbound(messages.plain(), alice.pair, [bob.ref], SealOptions(at=NOW, chain=(inter.ref,)))
    assert isinstance(sealed, Sealed)
    (tmp_path / "sealed.eml").write_bytes(sealed.message)
    return tmp_path


def _signed(signer: Issued, inter: Issued | None, sender: str = "alice@a.test") -> bytes:
    head = f"From: {sender}\r\nTo: bob@b.test\r\nMIME-Version: 1.0\r\n".encode()
    chain = [inter.ref] if inter is not None else []
    return head + smime.detached(smime.wrap(messages.plain(sender=sender)), signer.pair, chain=chain)


def run(capsys, files, message: str, *extra: str) -> tuple[int, dict]:
    code = main(["verify", str(files / message), "--at", NOW.isoformat(), "--json", *extra])
    out = capsys.readouterr().out
    return code, json.loads(out)


CASES = [
    ("signed.eml", ["--anchor", "root.pem"], 0, "trusted", None),
    ("signed.eml", ["--anchor", "inter.pem"], 0, "trusted", None),
    ("signed.eml", ["--anchor", "other.pem"], 1, "untrusted", "chain"),
    ("signed.eml", ["--anchor", "other.pem", "--cert", "root.pem"], 1, "untrusted", "untrusted-root"),
    ("signed-nochain.eml", ["--anchor", "root.pem"], 1, "untrusted", "chain"),
    ("signed-nochain.eml", ["--anchor", "root.pem", "--cert", "inter.pem"], 0, "trusted", None),
    ("signed.eml", ["--anchor", "root.pem", "--crl", "revoking.crl"], 1, "untrusted", "revoked"),
    ("signed.eml", ["--anchor", "root.pem", "--crl", "clean.crl"], 0, "trusted", None),
    ("signed-cdp.eml", ["--anchor", "root.pem"], 1, "untrusted", "revocation-unknown"),
    ("signed-cdp.eml", ["--anchor", "root.pem", "--crl", "clean.crl"], 0, "trusted", None),
    ("sealed.eml", ["--anchor", "root.pem", "--key", "bob.key", "--cert-for-key", "bob.pem"], 0, "trusted", None),
    ("sealed.eml", ["--anchor", "root.pem"], 1, "rejected", None),
]


@pytest.mark.parametrize(
    ("message", "args", "code", "result", "check"),
    CASES,
    ids=[
        "root-anchor", "intermediate-anchor", "anchor-of-another-pki", "untrusted-root", "missing-intermediate", "intermediate-given",
        "revoked-by-given-crl", "clean-crl", "cdp-without-crl-offline", "cdp-with-given-crl",
        "encrypted-with-key", "encrypted-without-key",
    ],
)
def test_verify(capsys, files, message, args, code, result, check):
    args = [a if a.startswith("--") else str(files / a) for a in args]
    got, data = run(capsys, files, message, *args)
    assert (got, data["result"]) == (code, result), data
    if check:
        assert data["check"] == check
    if result == "trusted":
        assert data["signer"]["emails"] == ["alice@a.test"] or data["signer"]["emails"] == ["dana@a.test"]


def test_verify_binding(capsys, files):
    """alice's certificate on a message From mallory: the inner From is what binds."""
    code, data = run(capsys, files, "liar.eml", "--anchor", str(files / "root.pem"))
    assert code == 1 and data["check"] == "binding", data
    code, data = run(capsys, files, "liar.eml", "--anchor", str(files / "root.pem"), "--no-binding")
    assert code == 0, data


def test_verify_text_output_says_why(capsys, files):
    code = main(["verify", str(files / "signed.eml"), "--anchor", str(files / "other.pem"), "--at", NOW.isoformat()])
    captured = capsys.readouterr()
    assert code == 1
    assert "NOT TRUSTED (chain)" in captured.err and "Verify Root CA" in captured.err


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--anchor", "nothing.pem"], "cannot read"), (["--anchor", "root.pem", "--crl", "root.pem"], "CRL")],
    ids=["missing-anchor-file", "crl-is-not-a-crl"],
)
def test_verify_usage_errors(capsys, files, args, message):
    args = [a if a.startswith("--") else str(files / a) for a in args]
    code = main(["verify", str(files / "signed.eml"), *args])
    assert code == 2 and message in capsys.readouterr().err


def test_verify_ri_vector(capsys, ri_vectors):
    agent = ri_vectors / "agent"
    from gateway.core.certs import load_certificates

    at = load_certificates((agent / "gm2552.der").read_bytes())[0].not_before + timedelta(days=2)
    base = ["verify", str(agent / "EncryptedMessage2.txt"), "--anchor", str(agent / "secureHealthEmailCACert.der"),
            "--key", str(agent / "ryanKey.der"), "--cert-for-key", str(agent / "ryan.der"), "--at", at.isoformat(), "--json"]
    assert main([*base, "--allow-sha1"]) == 0, capsys.readouterr().out
    capsys.readouterr()
    assert main(base) == 1
    assert json.loads(capsys.readouterr().out)["check"] == "weak-signature-algorithm"


def test_verify_bare_ri_signature_is_refused(capsys, ri_vectors):
    code = main(["verify", str(ri_vectors / "agent" / "msgSig.txt"), "--anchor",
                 str(ri_vectors / "agent" / "secureHealthEmailCACert.der"), "--json", "--at", "2026-11-28T00:00:00+00:00"])
    data = json.loads(capsys.readouterr().out)
    assert code == 1 and data["result"] != "trusted", data
