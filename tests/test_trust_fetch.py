"""HttpFetcher's bounds (size, time, scheme) and what AIA answers may hold."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7

from trust import FetchError, FetchProblem, HttpFetcher, OfflineFetcher
from trust.chain import parse_ca_certificates

from .http_servers import LOOPBACK_ALLOWED
from .pki import issue
from .trust_pki import role_key


async def test_answer_within_bounds(http):
    http.files["/ok"] = b"x" * 1000
    f = HttpFetcher(timeout=2, destinations=LOOPBACK_ALLOWED)
    try:
        assert await f.get(http.url("/ok"), max_bytes=1000) == b"x" * 1000
    finally:
        await f.close()


@pytest.mark.parametrize(
    ("path", "url", "problem"),
    [
        ("/big", None, FetchProblem.TOO_LARGE),
        ("/slow", None, FetchProblem.TIMEOUT),
        ("/none", None, FetchProblem.HTTP_STATUS),
        (None, "https://crl.example/x.crl", FetchProblem.UNSUPPORTED_URL),
        (None, "ldap://ldap.example/cn=CA?certificateRevocationList", FetchProblem.UNSUPPORTED_URL),
        (None, "http://127.0.0.1:9/x.crl", FetchProblem.UNREACHABLE),
    ],
    ids=["too-large", "timeout", "404", "https", "ldap", "refused"],
)
async def test_fetch_problems_are_typed(http, path, url, problem):
    http.files["/big"] = b"x" * 5000
    http.files["/slow"] = b"late"
    http.delays["/slow"] = 1.0
    f = HttpFetcher(timeout=0.3, destinations=LOOPBACK_ALLOWED)
    try:
        with pytest.raises(FetchError) as info:
            await f.get(url or http.url(path), max_bytes=4096)
        assert info.value.problem is problem
    finally:
        await f.close()


async def test_offline_fetcher_refuses():
    with pytest.raises(FetchError) as info:
        await OfflineFetcher().get("http://x/y", max_bytes=10)
    assert info.value.problem is FetchProblem.OFFLINE


def test_aia_answer_forms():
    root = issue("AIA Root", ca=True, key=role_key("root"))
    inter = issue("AIA Intermediate", issuer=root, ca=True, key=role_key("inter"))
    assert parse_ca_certificates(inter.der, "u") == [inter.ref]
    assert parse_ca_certificates(inter.pem, "u") == [inter.ref]
    bundle = pkcs7.serialize_certificates([inter.cert, root.cert], Encoding.DER)
    assert set(parse_ca_certificates(bundle, "u")) == {inter.ref, root.ref}
    with pytest.raises(FetchError) as info:
        parse_ca_certificates(b"<html>not found</html>", "u")
    assert info.value.problem is FetchProblem.INVALID


def test_a_certificate_with_a_version_cryptography_refuses_is_refused_not_raised():
    """cryptography raises InvalidVersion, not a ValueError, for a certificate version
    other than v1-v3: an AIA answer or a carried certificate holding one is unusable, never
    an exception (tests/test_trust_revocation.py has the CRL's twin)."""
    from trust.chain import parses

    cert = issue("Version 6 CA", ca=True, key=role_key("inter"))
    v6 = cert.der.replace(b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x05", 1)
    assert v6 != cert.der
    with pytest.raises(FetchError):
        parse_ca_certificates(v6, "http://aia.test/ca.cer")
    from gateway.core.certs import CertRef

    assert not parses(CertRef(v6))
