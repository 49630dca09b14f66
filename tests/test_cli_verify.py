"""``directgw verify`` as an administrator runs it: offline, exactly the anchors and CRLs given."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7

from gateway.cli.main import main
from gateway.core import Sealed, SealOptions, cms, seal_outbound
from gateway.core.algorithms import Digest

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
    for name, sender, detached in (("bare.p7m", "alice@a.test", False), ("bare-liar.p7m", "mallory@a.test", False),
                                   ("bare-detached.p7s", "alice@a.test", True)):
        # bare CMS signatures (DER), as administrators find them in logs
        entity = smime.wrap(messages.plain(sender=sender))
        der = cms.sign(entity, alice.pair, Digest.SHA256, NOW, chain=(inter.ref,), detached=detached)
        (tmp_path / name).write_bytes(der)
    (tmp_path / "root.crl").write_bytes(crl(root))
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


WRONG_FILES = {
    "missing-anchor-file": (["--anchor", "nothing.pem"], 1, "--anchor @nothing.pem: cannot read"),
    "crl-is-a-certificate": (["--anchor", "root.pem", "--crl", "root.pem"], 1, "--crl @root.pem: this is a certificate, not a CRL"),
    "anchor-is-a-crl": (["--anchor", "clean.crl"], 1, "--anchor @clean.crl: this is a certificate revocation list (CRL), not a certificate"),
    "anchor-is-a-key": (["--anchor", "bob.key"], 1, "--anchor @bob.key: this is a private key, not a certificate"),
    "intermediate-truncated": (["--anchor", "root.pem", "--cert", "short.der"], 1, "--cert @short.der: this is unrecognised binary data"),
    "key-is-a-certificate": (["--anchor", "root.pem", "--key", "bob.pem", "--cert-for-key", "bob.pem"], 1,
                             "--key @bob.pem: this is a certificate, not a private key"),
    "key-without-its-certificate": (["--anchor", "root.pem", "--key", "bob.key"], 2,
                                    "1 --key and 0 --cert-for-key: give one --cert-for-key for each --key"),
    "bad-time": (["--anchor", "root.pem", "--at", "yesterday"], 2, "--at 'yesterday' is not an ISO 8601 time"),
}


@pytest.mark.parametrize(("args", "code", "message"), WRONG_FILES.values(), ids=WRONG_FILES.keys())
def test_verify_names_the_option_and_what_a_wrong_file_is(capsys, files, args, code, message):
    """One line naming the option, the file and what it is; exit 1 for a file, 2 for the command line."""
    (files / "short.der").write_bytes(_der(files)[:60])  # a truncated download
    args = [a if a.startswith("--") or a == "yesterday" else str(files / a) for a in args]
    code_got = main(["verify", str(files / "signed.eml"), *args])
    err = capsys.readouterr().err
    expected = re.sub(r"@([a-z.]+)", lambda m: str(files / m.group(1)), message)
    assert code_got == code and expected in err and err.count("\n") == 1, err
    assert "ParseError" not in err


def _der(files):
    from gateway.core.certs import load_certificates

    return load_certificates((files / "root.pem").read_bytes())[0].der


def test_following_the_key_hint_works(capsys, files):
    """The hint names --cert-for-key, and doing what it says opens the message (it used to loop on --cert)."""
    base = ["verify", str(files / "sealed.eml"), "--anchor", str(files / "root.pem"), "--key", str(files / "bob.key"),
            "--at", NOW.isoformat()]
    assert main(base) == 2
    assert "give one --cert-for-key for each --key" in capsys.readouterr().err
    assert main([*base, "--cert-for-key", str(files / "bob.pem")]) == 0


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



BARE = {
    "bound-to-its-content": ("bare.p7m", [], 0, "trusted", None),
    "content-from-someone-else": ("bare-liar.p7m", [], 1, "untrusted", "binding"),
    "liar-without-binding": ("bare-liar.p7m", ["--no-binding"], 0, "trusted", None),
    "detached-names-no-sender": ("bare-detached.p7s", [], 1, "untrusted", "binding"),
    "detached-without-binding": ("bare-detached.p7s", ["--no-binding"], 0, "trusted", None),
}


@pytest.mark.parametrize(("message", "extra", "code", "result", "check"), BARE.values(), ids=BARE.keys())
def test_a_bare_signature_is_bound_to_the_from_inside_it(capsys, files, message, extra, code, result, check):
    """Issue 7 section 1: judged without binding only when --no-binding says so."""
    got, data = run(capsys, files, message, "--anchor", str(files / "root.pem"), *extra)
    assert (got, data["result"], data.get("check")) == (code, result, check), data
    if message == "bare-detached.p7s" and not extra:
        assert "--no-binding" in data["detail"]
    if result == "trusted" and not extra:
        assert data["bound_to"] == "alice@a.test"


REVOCATION = {
    "when-declared-no-crl": ([], 0, None),
    "required-no-crl": (["--require-revocation"], 1, "revocation-unknown"),
    "required-leaf-covered-only": (["--require-revocation", "--crl", "clean.crl"], 1, "revocation-unknown"),
    "required-all-covered": (["--require-revocation", "--crl", "clean.crl", "--crl", "root.crl"], 0, None),
    "required-revoked": (["--require-revocation", "--crl", "revoking.crl", "--crl", "root.crl"], 1, "revoked"),
}


@pytest.mark.parametrize(("extra", "code", "check"), REVOCATION.values(), ids=REVOCATION.keys())
def test_require_revocation(capsys, files, extra, code, check):
    """--require-revocation: every certificate below the anchor covered by a CRL given (issue 7 section 4)."""
    extra = [a if a.startswith("--") else str(files / a) for a in extra]
    got, data = run(capsys, files, "signed.eml", "--anchor", str(files / "root.pem"), *extra)
    assert (got, data.get("check")) == (code, check), data


def test_anchors_may_come_as_a_p7b(capsys, files):
    """As anchors add reads them: a certs-only PKCS#7 bundle of two roots."""
    certs = [x509.load_pem_x509_certificate((files / f"{name}.pem").read_bytes()) for name in ("other", "root")]
    (files / "roots.p7b").write_bytes(pkcs7.serialize_certificates(certs, Encoding.DER))
    code, data = run(capsys, files, "signed.eml", "--anchor", str(files / "roots.p7b"))
    assert (code, data["result"]) == (0, "trusted"), data
