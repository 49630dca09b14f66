"""``directgw open`` and ``directgw seal`` as an administrator runs them."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, pkcs12

from gateway.cli.main import main

from . import messages, pki


@pytest.fixture(scope="module")
def people():
    a, b = pki.hisp("a.test"), pki.hisp("b.test")
    return a.address("alice"), b.address("bob"), b


@pytest.fixture
def files(tmp_path, people):
    alice, bob, _ = people
    for name, issued in (("alice", alice), ("bob", bob)):
        (tmp_path / f"{name}.crt").write_bytes(issued.pem)
        (tmp_path / f"{name}.key").write_bytes(issued.key_pem())
        (tmp_path / f"{name}.der").write_bytes(issued.der)
        (tmp_path / f"{name}.keyder").write_bytes(issued.key_der())
    (tmp_path / "plain.eml").write_bytes(messages.with_attachment())
    return tmp_path


def seal(files, capsysbinary, *extra: str) -> bytes:
    code = main(
        ["seal", str(files / "plain.eml"), "--sign-key", str(files / "alice.key"), "--sign-cert",
         str(files / "alice.crt"), "--to-cert", str(files / "bob.der"), *extra]
    )
    out = capsysbinary.readouterr().out
    assert code == 0
    (files / "sealed.eml").write_bytes(out)
    return out


@pytest.mark.parametrize(
    "extra", [[], ["--cipher", "aes128-gcm"], ["--oaep"], ["--cipher", "aes128-cbc", "--oaep"]],
    ids=["default", "gcm", "oaep", "cbc128-oaep"],
)
def test_seal_then_open_reports_signer_algorithms_and_attachments(files, capsysbinary, extra):
    seal(files, capsysbinary, *extra)
    code = main(["open", str(files / "sealed.eml"), "--key", str(files / "bob.keyder"),
                 "--cert", str(files / "bob.crt"), "--json"])
    report = json.loads(capsysbinary.readouterr().out)
    assert code == 0
    assert report["result"] == "opened"
    assert report["signature"]["signer"]["emails"] == ["alice@a.test"]
    assert report["signature"]["digest"] == "sha256"
    assert report["encryption"]["key_transport"] == ("rsa-oaep-sha256" if "--oaep" in extra else "rsa-pkcs1v15")
    ccda = [p for p in report["parts"] if p["kind"] == "c-cda"]
    assert ccda and ccda[0]["filename"] == "ccd.xml" and ccda[0]["size"] == len(messages.CCDA)


def test_open_with_the_wrong_key_exits_1_with_the_reason(files, capsysbinary):
    seal(files, capsysbinary)
    code = main(["open", str(files / "sealed.eml"), "--key", str(files / "alice.key"), "--cert", str(files / "alice.crt")])
    captured = capsysbinary.readouterr()
    assert code == 1
    assert b"no-key-for-recipient" in captured.err


def test_open_prints_readable_text_by_default(files, capsysbinary):
    seal(files, capsysbinary)
    assert main(["open", str(files / "sealed.eml"), "--key", str(files / "bob.key"), "--cert", str(files / "bob.crt")]) == 0
    out = capsysbinary.readouterr().out.decode()
    assert "signer:" in out and "alice@a.test" in out and "c-cda" in out


def test_pkcs12_with_password_file(files, capsysbinary, people):
    _, bob, _ = people
    (files / "bob.p12").write_bytes(
        pkcs12.serialize_key_and_certificates(b"bob", bob.key, bob.cert, None, BestAvailableEncryption(b"s3cret"))
    )
    (files / "pw").write_text("s3cret\n")
    seal(files, capsysbinary)
    code = main(["open", str(files / "sealed.eml"), "--p12", str(files / "bob.p12"), "--password-file", str(files / "pw")])
    assert code == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--key", "bob.crt", "--cert", "bob.crt"], b"not a usable private key"),
        (["--key", "alice.key", "--cert", "bob.crt"], b"does not belong to the certificate"),
        (["--key", "missing.key", "--cert", "bob.crt"], b"cannot read"),
        (["--key", "bob.key"], b"give one --cert for each --key"),
    ],
    ids=["cert-as-key", "mismatched-pair", "missing-file", "key-without-cert"],
)
def test_unusable_key_files_give_one_line_and_exit_2(files, capsysbinary, args, message):
    (files / "m.eml").write_bytes(messages.plain())
    code = main(["open", str(files / "m.eml"), *[str(files / a) if not a.startswith("--") else a for a in args]])
    err = capsysbinary.readouterr().err
    assert code == 2 and message in err and err.count(b"\n") == 1


def test_open_reads_a_bare_cms_signature(ri_vectors, capsysbinary):
    code = main(["open", str(ri_vectors / "agent" / "msgSig.txt"), "--json", "--at", "2026-11-28T00:00:00Z"])
    report = json.loads(capsysbinary.readouterr().out)
    assert code == 0 and report["digest"] == "sha1"
    assert {f["observation"] for f in report["findings"]} == {"sha1-digest", "short-rsa-key", "signer-expired"}


def test_seal_without_signing_key_is_a_usage_error(files, capsysbinary):
    code = main(["seal", str(files / "plain.eml"), "--to-cert", str(files / "bob.crt")])
    assert code == 2 and b"--sign-key" in capsysbinary.readouterr().err


def test_demo_tells_the_story(capsys):
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "decrypts with one of its keys" in out
    assert "not-encrypted" in out and "no-key-for-recipient" in out and "decryption-failed" in out
    assert "TRUSTED:" in out and "NOT TRUSTED" in out
    assert "dispatched: sealed by the clinic" in out and "never (no MDN to an MDN)" in out
