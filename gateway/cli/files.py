"""Reading the certificate, key and CRL files options name.

A wrong file is the commonest administrator mistake (the key given as the
certificate, a truncated download, the CA's CRL as an anchor). The library's
own message for it (``ParseError { kind: ShortData ... }``) says nothing to an
administrator, so a file that is not what its option needs is identified the
way ``anchors add`` does it (``anchors.importing``) and reported as the option,
the file and what the file is: ``--to-cert bob.key: this is a private key, not
a certificate``. Exit 1 (``CommandFailed``): the command line was well formed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from anchors.importing import AnchorFileError, AnchorProblem, FileKind, read_anchor_file
from gateway.core.certs import (
    CertRef,
    KeyMaterialError,
    KeyPair,
    PrivateKey,
    load_pkcs12,
    load_private_key,
)

from .args import CommandFailed, UsageError

_LIBRARY_DETAIL = re.compile(r":\s*(error parsing asn1 value|ParseError|Could not deserialize|unable to).*\Z", re.S)
"""Where an underlying library's own explanation starts in a message: cut, it
names parser internals rather than the file."""


def read_bytes(path: Path, option: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CommandFailed(f"{_named(option, path)}cannot read {path}: {exc.strerror}") from exc


def _named(option: str, path: Path) -> str:
    return f"{option} {path}: " if option else ""


def _plain(detail: str) -> str:
    return _LIBRARY_DETAIL.sub("", detail)


def _certificates(data: bytes, path: Path, option: str, at: datetime) -> tuple[CertRef, ...]:
    try:
        return read_anchor_file(data, str(path), at=at).certificates
    except AnchorFileError as exc:
        if exc.kind is not None:
            raise CommandFailed(f"{option} {path}: this is {exc.kind.value}, not a certificate") from exc
        if exc.problem is AnchorProblem.MALFORMED:
            raise CommandFailed(f"{option} {path}: a damaged certificate file ({_plain(exc.detail)})") from exc
        raise CommandFailed(f"{option} {path}: {_plain(exc.detail)}") from exc


def read_certs(paths: Sequence[Path], option: str, at: datetime) -> list[CertRef]:
    """Every certificate of every file: PEM (one or many), DER, or a PKCS#7 bundle."""
    out: list[CertRef] = []
    for path in paths:
        out.extend(_certificates(read_bytes(path, option), path, option, at))
    return out


def read_cert(path: Path, option: str, at: datetime) -> CertRef:
    """The one certificate a file holds (the first, for a chain file)."""
    return _certificates(read_bytes(path, option), path, option, at)[0]


@dataclass(frozen=True, slots=True)
class Identified:
    """What a file turned out to be, for a message saying it is not what its option needs."""

    kind: FileKind | None
    """What a file holding no certificate is; None when it holds certificates or is a damaged one."""
    certificates: int = 0

    def __str__(self) -> str:
        if self.kind is not None:
            return self.kind.value
        if self.certificates:
            return "a certificate" if self.certificates == 1 else f"{self.certificates} certificates"
        return "a damaged certificate file"


def identify(data: bytes, path: Path, at: datetime) -> Identified:
    try:
        return Identified(None, len(read_anchor_file(data, str(path), at=at).certificates))
    except AnchorFileError as exc:
        return Identified(exc.kind)


def read_private_key(path: Path, option: str, password: bytes | None, at: datetime) -> PrivateKey:
    data = read_bytes(path, option)
    try:
        return load_private_key(data, password)
    except KeyMaterialError as exc:
        found = identify(data, path, at)
        if found.kind is not FileKind.PRIVATE_KEY:
            raise CommandFailed(f"{option} {path}: this is {found}, not a private key") from exc
        if password is None and _encrypted(data):
            raise CommandFailed(f"{option} {path}: an encrypted key; give its password with --password-file") from exc
        raise CommandFailed(f"{option} {path}: {_plain(str(exc))}") from exc


def _encrypted(data: bytes) -> bool:
    """PEM ``ENCRYPTED PRIVATE KEY`` or a legacy ``Proc-Type: 4,ENCRYPTED`` header; DER PKCS#8 encrypted keys
    are identified by ``anchors.importing`` as private keys, and the library's message then says a password is missing."""
    return b"ENCRYPTED" in data[:4096]


def read_pairs(
    keys: Sequence[Path],
    certs: Sequence[Path],
    p12s: Sequence[Path],
    password_file: Path | None,
    *,
    key_option: str,
    cert_option: str,
    at: datetime,
    p12_option: str = "--p12",
) -> list[KeyPair]:
    """Key pairs from ``key_option``/``cert_option`` pairs (in order) and PKCS#12 files."""
    if len(keys) != len(certs):
        raise UsageError(
            f"{len(keys)} {key_option} and {len(certs)} {cert_option}: "
            f"give one {cert_option} for each {key_option}, in the same order"
        )
    password = read_password(password_file)
    pairs: list[KeyPair] = []
    for key_path, cert_path in zip(keys, certs, strict=True):
        key = read_private_key(key_path, key_option, password, at)
        cert = read_cert(cert_path, cert_option, at)
        try:
            pair = KeyPair(key, cert)
        except KeyMaterialError as exc:
            raise CommandFailed(f"{key_option} {key_path} does not belong to {cert_option} {cert_path} "
                                f"({cert.subject})") from exc
        pairs.append(pair)
    for p12 in p12s:
        data = read_bytes(p12, p12_option)
        try:
            pairs.append(load_pkcs12(data, password))
        except KeyMaterialError as exc:
            found = identify(data, p12, at)
            if found.kind is not FileKind.PKCS12:
                raise CommandFailed(f"{p12_option} {p12}: this is {found}, not a PKCS#12 file") from exc
            raise CommandFailed(f"{p12_option} {p12}: {_plain(str(exc))}") from exc
    return pairs


def read_password(path: Path | None) -> bytes | None:
    return read_bytes(path, "--password-file").rstrip(b"\r\n") if path else None
