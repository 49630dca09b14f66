"""Independent S/MIME peers for interoperability tests: ``openssl cms`` and GnuPG's ``gpgsm``.

Each wraps the command lines of shared/TOOLING.md. They take our test PKI's
``Issued`` certificates and produce or consume whole messages, so a test can
put our outbound on one side and a peer on the other.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives import hashes

from gateway.devpki import Issued

from .prerequisites import require_peer


class PeerError(RuntimeError):
    """A peer refused the input: its exit status, what it wrote (tests assert nothing leaked) and its stderr."""

    def __init__(self, message: str, *, returncode: int | None = None, stdout: bytes = b"", stderr: str = ""):
        super().__init__(message)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


def _run(args: list[str], *, stdin: bytes | None = None, env: dict[str, str] | None = None) -> bytes:
    proc = subprocess.run(args, input=stdin, capture_output=True, env=env, timeout=60, check=False)
    if proc.returncode != 0:
        stderr = proc.stderr.decode(errors="replace")
        raise PeerError(
            f"{' '.join(args[:3])}... exited {proc.returncode}: {stderr}",
            returncode=proc.returncode, stdout=proc.stdout, stderr=stderr,
        )
    return proc.stdout


class OpenSSL:
    """``openssl cms`` (OpenSSL 3) as a sending and receiving HISP."""

    CIPHERS = ("aes-128-cbc", "aes-256-cbc", "aes-128-gcm", "aes-256-gcm", "des-ede3-cbc")

    def __init__(self, workdir: Path):
        require_peer("openssl")
        self.dir = workdir
        self._n = 0

    def _file(self, data: bytes, suffix: str = "") -> str:
        self._n += 1
        path = self.dir / f"f{self._n}{suffix}"
        path.write_bytes(data)
        return str(path)

    def _cert(self, issued: Issued) -> str:
        return self._file(issued.pem, ".pem")

    def _key(self, issued: Issued) -> str:
        return self._file(issued.key_pem(), ".key")

    def sign(
        self, entity: bytes, signer: Issued, *, detached: bool = True, md: str = "sha256",
        chain: Sequence[Issued] = (), keyopts: Sequence[str] = (),
    ) -> bytes:
        """An S/MIME entity: multipart/signed, or opaque signed-data with ``detached=False``."""
        args = ["openssl", "cms", "-sign", "-binary", "-crlfeol", "-md", md, "-in", self._file(entity),
                "-signer", self._cert(signer), "-inkey", self._key(signer)]
        for k in keyopts:
            args += ["-keyopt", k]
        if not detached:
            args.append("-nodetach")
        if chain:
            args += ["-certfile", self._file(b"".join(c.pem for c in chain), ".pem")]
        return _run(args)

    def encrypt(
        self, entity: bytes, recipients: Sequence[Issued], *, cipher: str = "aes-256-cbc",
        oaep_md: str | None = None, keyid: bool = False, stream: bool = False,
    ) -> bytes:
        """An S/MIME entity application/pkcs7-mime (enveloped or authEnveloped data)."""
        args = ["openssl", "cms", "-encrypt", "-binary", "-crlfeol", f"-{cipher}", "-in", self._file(entity)]
        for r in recipients:
            args += ["-recip", self._cert(r)]
            if oaep_md:
                args += ["-keyopt", "rsa_padding_mode:oaep", "-keyopt", f"rsa_oaep_md:{oaep_md}"]
        if keyid:
            args.append("-keyid")
        if stream:
            args.append("-stream")
        return _run(args)

    def decrypt(self, message: bytes, recipient: Issued) -> bytes:
        return _run(["openssl", "cms", "-decrypt", "-binary", "-in", self._file(message),
                     "-recip", self._cert(recipient), "-inkey", self._key(recipient)])

    def verify(self, message: bytes, anchors: Sequence[Issued]) -> bytes:
        """The signed content, if the signature verifies and chains to ``anchors`` for S/MIME signing.

        Without ``-binary``: with it, OpenSSL 3.0 reads a multipart/signed first
        part differently from how it writes one and fails its own messages too.
        """
        return _run(["openssl", "cms", "-verify", "-in", self._file(message),
                     "-CAfile", self._file(b"".join(a.pem for a in anchors), ".pem"), "-purpose", "smimesign"])


class Gpgsm:
    """GnuPG's ``gpgsm`` with a throwaway home: certificates imported, roots trusted, keys imported."""

    def __init__(self, home: Path, roots: Sequence[Issued], cas: Sequence[Issued] = ()):
        require_peer("gpgsm")
        require_peer("gpgconf")
        require_peer("openssl")
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        os.chmod(home, 0o700)
        (home / "gpg-agent.conf").write_text("allow-loopback-pinentry\n")
        (home / "gpgsm.conf").write_text("disable-crl-checks\n")
        self.env = {**os.environ, "GNUPGHOME": str(home)}
        self._import_certs([*roots, *cas])
        trust = []
        for root in roots:
            fingerprint = root.cert.fingerprint(hashes.SHA1())
            trust.append(f"{fingerprint.hex().upper()} S relax\n")
        (home / "trustlist.txt").write_text("".join(trust))

    def _gpgsm(self, *args: str, stdin: bytes | None = None, passphrase: bool = False) -> bytes:
        base = ["gpgsm", "--batch", "--no-tty"]
        if passphrase:  # shared/TOOLING.md: --passphrase is not honoured for keys; the fd is
            base += ["--pinentry-mode", "loopback", "--passphrase-fd", "0"]
            stdin = b"pw\n" + (stdin or b"")
        return _run([*base, *args], stdin=stdin, env=self.env)

    def version(self) -> str:
        """gpgsm's version, e.g. ``2.2.40`` (the first line of ``--version`` is ``gpgsm (GnuPG) 2.2.40``)."""
        return self._gpgsm("--version").decode().splitlines()[0].rsplit(" ", 1)[-1]

    def _import_certs(self, certs: Sequence[Issued]) -> None:
        path = self.home / "certs.pem"
        path.write_bytes(b"".join(c.pem for c in certs))
        self._gpgsm("--import", str(path))

    def add_key(self, pair: Issued) -> None:
        """Import a key and certificate; gpgsm reads only legacy PKCS#12 (TOOLING.md)."""
        key, cert, p12 = self.home / "k.pem", self.home / "c.pem", self.home / "k.p12"
        key.write_bytes(pair.key_pem())
        cert.write_bytes(pair.pem)
        try:
            for _ in range(3):  # imports fail now and then (TOOLING.md): a fresh export each time
                _run(["openssl", "pkcs12", "-export", "-inkey", str(key), "-in", str(cert), "-passout", "pass:pw",
                      "-certpbe", "NONE", "-keypbe", "PBE-SHA1-3DES", "-macalg", "sha1", "-out", str(p12)])
                try:
                    self._gpgsm("--import", str(p12), passphrase=True)
                except PeerError:
                    continue
                if self._has_secret(pair):
                    return
        finally:
            key.unlink(missing_ok=True)
        raise PeerError("gpgsm did not import the secret key")

    def _has_secret(self, pair: Issued) -> bool:
        listing = self._gpgsm("--with-colons", "--list-secret-keys")
        fingerprint = pair.cert.fingerprint(hashes.SHA1())
        return fingerprint.hex().upper().encode() in listing

    def sign(self, content: bytes, signer: str, *, detached: bool = True) -> bytes:
        """Raw BER CMS signed-data (detached, or with the content inside)."""
        path = self.home / "content"
        path.write_bytes(content)
        mode = "--detach-sign" if detached else "--sign"
        return self._gpgsm("-u", signer, "--include-certs", "-1", mode, str(path), passphrase=True)

    def encrypt(self, content: bytes, recipient: str) -> bytes:
        """Raw BER CMS enveloped-data."""
        path = self.home / "plain"
        path.write_bytes(content)
        return self._gpgsm("-r", recipient, "--encrypt", str(path))

    def decrypt(self, cms_der: bytes) -> bytes:
        path = self.home / "in.p7m"
        path.write_bytes(cms_der)
        return self._gpgsm("--decrypt", str(path), passphrase=True)

    def verify(self, signature: bytes, content: bytes) -> None:
        sig, data = self.home / "s.p7s", self.home / "data"
        sig.write_bytes(signature)
        data.write_bytes(content)
        self._gpgsm("--verify", str(sig), str(data))

    def close(self) -> None:
        subprocess.run(["gpgconf", "--kill", "all"], env=self.env, capture_output=True, check=False)
        shutil.rmtree(self.home, ignore_errors=True)


def pkcs7_mime(der: bytes, smime_type: str, headers: bytes = b"") -> bytes:
    """Raw CMS (as gpgsm writes it) as an S/MIME entity."""
    return (
        headers
        + f"MIME-Version: 1.0\r\nContent-Type: application/pkcs7-mime; smime-type={smime_type}; name=smime.p7m\r\n".encode()
        + b"Content-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(der).replace(b"\n", b"\r\n")
    )


def multipart_signed(entity: bytes, signature_der: bytes, micalg: str = "sha-256") -> bytes:
    boundary = "gpgsm-" + os.urandom(6).hex()
    return (
        f'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg={micalg}; '
        f'boundary="{boundary}"\r\n\r\n--{boundary}\r\n'.encode()
        + entity
        + f"\r\n--{boundary}\r\nContent-Type: application/pkcs7-signature; name=smime.p7s\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n".encode()
        + base64.encodebytes(signature_der).replace(b"\n", b"\r\n")
        + f"--{boundary}--\r\n".encode()
    )


def body_der(message: bytes) -> bytes:
    """The CMS inside an S/MIME message with a base64 body."""
    return base64.b64decode(message.split(b"\r\n\r\n", 1)[1])


__all__ = ["Gpgsm", "OpenSSL", "PeerError", "body_der", "multipart_signed", "pkcs7_mime"]
