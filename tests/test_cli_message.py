"""``directgw open`` and ``directgw seal`` as an administrator runs them."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, pkcs12
from hypothesis import given, settings
from hypothesis import strategies as st

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


UNUSABLE_KEYS = {
    "cert-as-key": (["--key", "bob.crt", "--cert", "bob.crt"], 1, b"--key BOB.CRT: this is a certificate, not a private key"),
    "mismatched-pair": (["--key", "alice.key", "--cert", "bob.crt"], 1, b"--key ALICE.KEY does not belong to --cert"),
    "missing-file": (["--key", "missing.key", "--cert", "bob.crt"], 1, b"--key MISSING.KEY: cannot read"),
    "key-as-cert": (["--key", "bob.key", "--cert", "bob.key"], 1, b"--cert BOB.KEY: this is a private key, not a certificate"),
    "key-without-cert": (["--key", "bob.key"], 2, b"1 --key and 0 --cert: give one --cert for each --key"),
}


@pytest.mark.parametrize(("args", "code", "message"), UNUSABLE_KEYS.values(), ids=UNUSABLE_KEYS.keys())
def test_unusable_key_files_give_one_line_naming_option_and_file(files, capsysbinary, args, code, message):
    """A wrong file is exit 1 and says which option named it and what it is; a wrong command line is exit 2."""
    (files / "m.eml").write_bytes(messages.plain())
    argv = [str(files / a) if not a.startswith("--") else a for a in args]
    got = main(["open", str(files / "m.eml"), *argv])
    err = capsysbinary.readouterr().err
    for a in args:  # the message names the files as given
        message = message.replace(a.upper().encode(), str(files / a).encode())
    assert got == code and message in err and err.count(b"\n") == 1, err


def wrong_files(people):
    """Files an administrator gives where a certificate is expected, and what each is."""
    alice, bob, b = people
    from tests import anchor_files

    return {
        "private-key": (bob.key_pem(), "a private key"),
        "truncated-der": (bob.der[:100], "unrecognised binary data"),
        "crl": (_crl(b), "a certificate revocation list (CRL)"),
        "empty": (b"", "an empty file"),
        "html": (b"<html><body>Sign in</body></html>", "an HTML page"),
        "pkcs12": (anchor_files.p12(alice), "a PKCS#12 key store"),
    }


def _crl(hisp):
    from tests import anchor_files

    return anchor_files.crl(hisp.root)


@pytest.mark.parametrize("which", ["private-key", "truncated-der", "crl", "empty", "html", "pkcs12"])
@pytest.mark.parametrize("option", ["--to-cert", "--chain", "--sign-cert"])
def test_seal_names_a_wrong_certificate_file(files, capsysbinary, people, option, which):
    data, kind = wrong_files(people)[which]
    (files / "wrong").write_bytes(data)
    argv = {"--to-cert": str(files / "bob.crt"), "--chain": None, "--sign-cert": str(files / "alice.crt")}
    args = ["seal", str(files / "plain.eml"), "--sign-key", str(files / "alice.key")]
    for opt, default in argv.items():
        value = str(files / "wrong") if opt == option else default
        if value is not None:
            args += [opt, value]
    code = main(args)
    err = capsysbinary.readouterr().err.decode()
    assert code == 1, err
    assert err.startswith(f"directgw: {option} {files / 'wrong'}: ") and kind in err, err
    assert "ParseError" not in err and "asn1" not in err and err.count("\n") == 1


def test_seal_accepts_a_p7b_of_recipients(files, capsysbinary, people):
    from tests import anchor_files

    _, bob, _ = people
    (files / "bob.p7b").write_bytes(anchor_files.p7b(bob))
    code = main(["seal", str(files / "plain.eml"), "--sign-key", str(files / "alice.key"), "--sign-cert",
                 str(files / "alice.crt"), "--to-cert", str(files / "bob.p7b")])
    assert code == 0 and b"application/pkcs7-mime" in capsysbinary.readouterr().out


SEAL_WARNINGS = {
    "bound": ("alice@a.test", ("bob@b.test",), []),
    "from-not-bound": ("mallory@a.test", ("bob@b.test",), ["the From mallory@a.test is not bound by the signing certificate"]),
    "no-to": ("alice@a.test", (), ["the message has no To"]),
    "neither": ("carol@c.test", (), ["the From carol@c.test is not bound", "the message has no To"]),
    "two-mailboxes": ("alice@a.test, mallory@a.test", ("bob@b.test",), ["names more than one mailbox"]),
    "display-name-is-no-address": ('"alice@a.test" <mallory@a.test>', ("bob@b.test",),
                                   ["the From mallory@a.test is not bound"]),
}


@pytest.mark.parametrize(("sender", "to", "warnings"), SEAL_WARNINGS.values(), ids=SEAL_WARNINGS.keys())
def test_seal_warns_what_the_recipient_will_refuse(files, capsysbinary, sender, to, warnings):
    """Sealed anyway (exit 0, the message on stdout), with one warning line per problem on stderr."""
    (files / "m.eml").write_bytes(messages.plain(sender=sender, recipients=to))
    code = main(["seal", str(files / "m.eml"), "--sign-key", str(files / "alice.key"), "--sign-cert",
                 str(files / "alice.crt"), "--to-cert", str(files / "bob.crt")])
    captured = capsysbinary.readouterr()
    err = captured.err.decode()
    assert code == 0 and b"application/pkcs7-mime" in captured.out
    assert err.count("warning: ") == len(warnings) and all(w in err for w in warnings), err


def test_open_reads_a_bare_cms_signature(ri_vectors, capsysbinary):
    code = main(["open", str(ri_vectors / "agent" / "msgSig.txt"), "--json", "--at", "2026-11-28T00:00:00Z"])
    report = json.loads(capsysbinary.readouterr().out)
    assert code == 0 and report["digest"] == "sha1"
    assert {f["observation"] for f in report["findings"]} == {"sha1-digest", "short-rsa-key", "signer-expired"}


def test_seal_without_signing_key_is_a_usage_error(files, capsysbinary):
    code = main(["seal", str(files / "plain.eml"), "--to-cert", str(files / "bob.crt")])
    assert code == 2 and b"--sign-key" in capsysbinary.readouterr().err


def _with_attachments(names: list[str | None]) -> bytes:
    """A message carrying one small attachment per name (None: no filename)."""
    boundary = "b1_attachments"
    parts = [f"--{boundary}\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n"]
    for n, name in enumerate(names):
        disposition = "attachment" if name is None else f'attachment; filename="{name}"'
        parts.append(f"--{boundary}\r\nContent-Type: application/octet-stream\r\n"
                     f"Content-Disposition: {disposition}\r\n\r\npart {n}\r\n")
    body = "".join(parts).encode() + f"--{boundary}--\r\n".encode()
    return messages.plain(body=body, extra_headers=(("MIME-Version", "1.0"),
                                                     ("Content-Type", f'multipart/mixed; boundary="{boundary}"')))


def test_open_output_writes_the_inner_message_and_attachments(files, capsysbinary):
    seal(files, capsysbinary)
    out = files / "out"
    code = main(["open", str(files / "sealed.eml"), "--key", str(files / "bob.key"), "--cert", str(files / "bob.crt"),
                 "--output", str(out), "--json"])
    report = json.loads(capsysbinary.readouterr().out)
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["ccd.xml", "message.eml"]
    assert report["written"] == [str(out / "message.eml"), str(out / "ccd.xml")]
    assert (out / "ccd.xml").read_bytes() == messages.CCDA
    inner = (out / "message.eml").read_bytes()
    assert inner.startswith(b"From: alice@a.test\r\n") and b"Content-Type: multipart/mixed" in inner


HOSTILE_NAMES = {
    "traversal": ("../../escape.txt", "escape.txt"),
    "absolute": ("/etc/passwd", "passwd"),
    "windows-traversal": ("..\\\\..\\\\win.ini", "win.ini"),
    "dot-name": ("..", "attachment-1.bin"),
    "hidden": (".bashrc", "bashrc"),
    "no-name": (None, "attachment-1.bin"),
    "the-message-name": ("message.eml", "message-2.eml"),
    "odd-characters": ("a;b|c$d`e.pdf", "a_b_c_d_e.pdf"),
    "long": ("x" * 300 + ".pdf", "x" * 96 + ".pdf"),
}


@pytest.mark.parametrize(("given", "written"), HOSTILE_NAMES.values(), ids=HOSTILE_NAMES.keys())
def test_open_output_keeps_hostile_names_inside_the_directory(files, capsysbinary, given, written, tmp_path):
    (files / "m.eml").write_bytes(_with_attachments([given]))
    sealed = seal_file(files, capsysbinary, "m.eml")
    out = tmp_path / "deep" / "out"
    assert main(["open", str(sealed), "--key", str(files / "bob.key"), "--cert", str(files / "bob.crt"),
                 "--output", str(out)]) == 0
    capsysbinary.readouterr()
    assert sorted(p.name for p in out.iterdir()) == sorted(["message.eml", written])
    assert sorted(p.name for p in (tmp_path / "deep").iterdir()) == ["out"]  # nothing beside it


def test_open_output_numbers_duplicates_and_never_overwrites(files, capsysbinary, tmp_path):
    (files / "m.eml").write_bytes(_with_attachments(["ccd.xml", "ccd.xml", "sub/ccd.xml", "link.txt"]))
    sealed = seal_file(files, capsysbinary, "m.eml")
    out = tmp_path / "out"
    out.mkdir()
    (out / "ccd.xml").write_bytes(b"kept")
    outside = tmp_path / "outside.txt"
    (out / "link.txt").symlink_to(outside)  # a link planted to write outside DIR
    assert main(["open", str(sealed), "--key", str(files / "bob.key"), "--cert", str(files / "bob.crt"),
                 "--output", str(out)]) == 0
    capsysbinary.readouterr()
    assert (out / "ccd.xml").read_bytes() == b"kept"
    assert [(out / f"ccd-{n}.xml").read_bytes() for n in (2, 3, 4)] == [b"part 0", b"part 1", b"part 2"]
    assert (out / "link-2.txt").read_bytes() == b"part 3"
    assert not outside.exists()


def test_open_output_writes_nothing_for_a_rejected_message(files, capsysbinary):
    seal(files, capsysbinary)
    out = files / "out"
    code = main(["open", str(files / "sealed.eml"), "--key", str(files / "alice.key"), "--cert",
                 str(files / "alice.crt"), "--output", str(out)])
    assert code == 1 and not out.exists()
    capsysbinary.readouterr()


def seal_file(files, capsysbinary, name: str):
    code = main(["seal", str(files / name), "--sign-key", str(files / "alice.key"), "--sign-cert",
                 str(files / "alice.crt"), "--to-cert", str(files / "bob.crt")])
    assert code == 0
    sealed = files / f"{name}.sealed"
    sealed.write_bytes(capsysbinary.readouterr().out)
    return sealed


def test_a_certificate_given_as_pkcs12_is_named(files, capsysbinary):
    code = main(["open", str(files / "bob.crt"), "--p12", str(files / "bob.crt")])
    err = capsysbinary.readouterr().err.decode()
    assert code == 1 and err == f"directgw: --p12 {files / 'bob.crt'}: this is a certificate, not a PKCS#12 file\n"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400) | st.none())
def test_safe_names_stay_in_their_directory(name):
    from gateway.cli.output import MAX_NAME_CHARS, safe_name

    safe = safe_name(name, "attachment-1.bin")
    assert safe and len(safe) <= MAX_NAME_CHARS
    assert "/" not in safe and "\\" not in safe and "\x00" not in safe
    assert not safe.startswith(".") and safe not in (".", "..")
    assert all(c.isprintable() for c in safe)


def test_open_output_of_a_bare_signature_says_nothing_was_written(ri_vectors, capsysbinary, tmp_path):
    code = main(["open", str(ri_vectors / "agent" / "msgSig.txt"), "--at", "2026-11-28T00:00:00Z",
                 "--output", str(tmp_path / "out")])
    err = capsysbinary.readouterr().err.decode()
    assert code == 0 and "a bare signature carries no message: nothing written" in err
    assert not (tmp_path / "out").exists()


def test_seal_refuses_two_sources_of_the_signing_key(files, capsysbinary):
    code = main(["seal", str(files / "plain.eml"), "--sign-p12", str(files / "bob.crt"), "--sign-key",
                 str(files / "alice.key"), "--to-cert", str(files / "bob.crt")])
    assert code == 2 and b"not both" in capsysbinary.readouterr().err
