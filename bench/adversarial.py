"""What a crafted message costs against a valid message of the same size (issue 7 section 3).

For each attack class, a worst-case message is built at 1, 10 and 64 MiB (the
last just under ``limits.MAX_MESSAGE_BYTES``) and opened with ``open_inbound``
beside a valid sealed message of the same size, in one run:

- time: CPU seconds (process_time), median of a few runs; target worst/valid <= 2x;
- memory: peak of Python allocations while opening (tracemalloc); target <= 3x.

"Worst case" is the most of each thing the limits let through (one more is
refused after a bounded walk, which costs less): the rest of the size is a
valid attachment, so both messages carry the same bytes to decrypt, hash and
decode. Classes:

  recipients        100 RecipientInfos (MAX_CMS_RECIPIENTS), every one naming our certificate
  signers           4 SignerInfos (MAX_CMS_SIGNERS)
  certificates      50 certificates with the signature (MAX_CMS_CERTIFICATES)
  signed-attrs      32 signed attributes (MAX_CMS_SIGNED_ATTRIBUTES), 1 KiB each, signed
  pieces            the ciphertext cut in as many pieces as allowed, nearly all empty
  ber-nesting       every length indefinite, the ciphertext pieces nested as deep as opens
  ber-elements      an originatorInfo of two-byte elements up to the walk's step budget
  mime-params       an attachment's name in RFC 2231 pieces filling the header limit
  from-at-angle     a signed From of many '@' and '<' filling the header limit
  headers           signed and outer header sections at the header limit
  path-building     ten CA certificates with one name and one key, decided by
                    trust.TrustService (OfflineFetcher) after open_inbound; its
                    reference is a valid message whose chain is decided the same way

Run: .venv/bin/python bench/adversarial.py [--quick] [--classes a,b]
(--quick: 1 MiB only.)
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import gc
import os
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric import padding as asym

from gateway import devpki
from gateway.core import Limits, Opened, Rejected, cms, open_inbound
from gateway.core.algorithms import ContentCipher, Digest, KeyTransport
from gateway.core.limits import (
    DER_BYTES_PER_STEP,
    DER_STEPS_FLOOR,
    MAX_CMS_CERTIFICATES,
    MAX_CMS_RECIPIENTS,
    MAX_CMS_SIGNED_ATTRIBUTES,
    MAX_CMS_SIGNERS,
    MAX_HEADER_BYTES,
    MAX_MESSAGE_BYTES,
)
from gateway.core.mime import base64_lines
from tests.tlv import Node, at, encode, parse

MiB = 1 << 20
SIZES = {"1 MiB": MiB, "10 MiB": 10 * MiB, "64 MiB": MAX_MESSAGE_BYTES - 256 * 1024}
NOW = devpki.NOW
LIMITS = Limits()

A, B = devpki.hisp("a.test"), devpki.hisp("b.test")
ALICE, BOB = A.address("alice"), B.address("bob")
OUTER = b"From: alice@a.test\r\nTo: bob@b.test\r\nSubject: Summary of care\r\nMessage-ID: <adv@a.test>\r\nMIME-Version: 1.0\r\n"


# --------------------------------------------------------------------------- building


def plain(attachment: int, *, from_: bytes = b"alice@a.test", extra: bytes = b"", part: bytes = b"") -> bytes:
    data = (b"<entry>observation</entry>\r\n" * (attachment // 27 + 1))[:attachment]
    return (
        b"From: " + from_ + b"\r\nTo: bob@b.test\r\nSubject: Summary of care\r\nMessage-ID: <adv@a.test>\r\n"
        + extra + b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b1"\r\n\r\n'
        b"--b1\r\nContent-Type: text/plain\r\n\r\nSummary attached.\r\n"
        b"--b1\r\nContent-Type: text/xml" + part + b"\r\nContent-Transfer-Encoding: base64\r\n"
        b"Content-Disposition: attachment; filename=ccd.xml\r\n\r\n" + base64_lines(data) + b"--b1--\r\n"
    )


def multipart_signed(entity: bytes, signature: bytes) -> bytes:
    return (
        b'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256; boundary="sig"\r\n\r\n'
        b"--sig\r\n" + entity + b"\r\n--sig\r\nContent-Type: application/pkcs7-signature; name=smime.p7s\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + base64_lines(signature) + b"--sig--\r\n"
    )


def pkcs7(der: bytes, outer: bytes = OUTER) -> bytes:
    return (
        outer + b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + base64_lines(der)
    )


Tweak = Callable[[Node], None]


@dataclass(frozen=True)
class Recipe:
    """How one message is made, from the plain message to the S/MIME around it."""

    signer: devpki.Issued | None = None
    """Alice when not given."""
    chain: tuple[devpki.Issued, ...] = (A.intermediate,)
    from_: bytes = b"alice@a.test"
    extra: bytes = b""
    part: bytes = b""
    outer: bytes = OUTER
    signed_tweak: Tweak | None = None
    enveloped_tweak: Tweak | None = None

    def build(self, attachment: int) -> bytes:
        entity = b"Content-Type: message/rfc822\r\n\r\n" + plain(
            attachment, from_=self.from_, extra=self.extra, part=self.part
        )
        signer = self.signer or ALICE
        signature = cms.sign(entity, signer.pair, Digest.SHA256, NOW, chain=tuple(c.ref for c in self.chain))
        if self.signed_tweak:
            signature = tweaked(signature, self.signed_tweak)
        der = cms.encrypt(multipart_signed(entity, signature), [BOB.ref], ContentCipher.AES256_CBC, KeyTransport.RSA_PKCS1V15)
        if self.enveloped_tweak:
            der = tweaked(der, self.enveloped_tweak)
        return pkcs7(der, self.outer)


def tweaked(der: bytes, tweak: Tweak) -> bytes:
    root = parse(der)
    tweak(root)
    return encode(root)


def fit(recipe: Recipe, target: int) -> bytes:
    """A message of about ``target`` bytes: the attachment sized by two builds."""
    size = max(1024, int(target / 1.8))
    first = recipe.build(size)
    size = max(1024, size + int((target - len(first)) / 1.78))
    message = recipe.build(size)
    return message if len(message) <= MAX_MESSAGE_BYTES else recipe.build(size - int((len(message) - MAX_MESSAGE_BYTES) / 1.7))


# --------------------------------------------------------------------------- the tweaks


def oid_content(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    out = bytearray()
    for arc in [40 * arcs[0] + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        while arc := arc >> 7:
            chunk.append(0x80 | (arc & 0x7F))
        out += bytes(reversed(chunk))
    return bytes(out)


def children(node: Node) -> list[Node]:
    assert isinstance(node.value, list)
    return node.value


def many_recipients(root: Node) -> None:
    infos = children(at(root, 1, 0, 1))
    infos.extend(copy.deepcopy(infos[0]) for _ in range(MAX_CMS_RECIPIENTS - 1))


def many_signers(root: Node) -> None:
    signers = children(at(root, 1, 0, 4))
    signers.extend(copy.deepcopy(signers[0]) for _ in range(MAX_CMS_SIGNERS - 1))


def many_signed_attributes(root: Node) -> None:
    signer = at(root, 1, 0, 4, 0)
    attrs = at(signer, 3)
    for n in range(MAX_CMS_SIGNED_ATTRIBUTES - len(children(attrs))):
        value = Node(0x31, [Node(0x04, os.urandom(1024))])
        children(attrs).append(Node(0x30, [Node(0x06, oid_content(f"1.3.6.1.4.1.55555.{n}")), value]))
    to_sign = b"\x31" + encode(attrs)[1:]
    at(signer, 5).value = ALICE.key.sign(to_sign, asym.PKCS1v15(), hashes.SHA256())


def _pieces(value: bytes, size: int) -> list[Node]:
    return [Node(0x04, value[i : i + size]) for i in range(0, len(value), size)]


def many_pieces(root: Node) -> None:
    """As many pieces as limits.max_cms_chunks allows for the element, all but the real ones empty."""
    ciphertext = at(root, 1, 0, 2, 2)
    assert isinstance(ciphertext.value, bytes)
    real = _pieces(ciphertext.value, 4096)
    ciphertext.tag, ciphertext.indefinite = 0xA0, True
    empties = 0
    while True:  # each empty piece adds two bytes to the span, and so to the allowance
        ciphertext.value = [Node(0x04, b"")] * empties + real
        allowed = LIMITS.max_cms_chunks(len(encode(ciphertext)))
        if allowed - len(real) <= empties:
            break
        empties = allowed - len(real)
    ciphertext.value = [Node(0x04, b"")] * (allowed - len(real)) + real


def ber_nesting(depth: int) -> Tweak:
    def tweak(root: Node) -> None:
        for node in (root, at(root, 1), at(root, 1, 0), at(root, 1, 0, 2)):
            node.indefinite = True
        ciphertext = at(root, 1, 0, 2, 2)
        assert isinstance(ciphertext.value, bytes)
        inner = _pieces(ciphertext.value, 4096)
        for _ in range(depth):
            inner = [Node(0x24, inner, True)]
        ciphertext.tag, ciphertext.value, ciphertext.indefinite = 0xA0, inner, True

    return tweak


def many_elements(root: Node) -> None:
    """An originatorInfo (never read, but walked to find its end) of NULLs up to the budget."""
    size = len(encode(root))
    count = int(0.9 * (DER_STEPS_FLOOR + size // DER_BYTES_PER_STEP))
    for node in (root, at(root, 1), at(root, 1, 0)):
        node.indefinite = True
    children(at(root, 1, 0)).insert(1, Node(0xA0, [Node(0x05, b"")] * count, True))


def deepest_opening_nesting() -> int:
    for depth in range(40, 0, -1):
        if isinstance(open_inbound(Recipe(enveloped_tweak=ber_nesting(depth)).build(10_000), [BOB.pair], at=NOW), Opened):
            return depth
    return 0


def header_fill(prefix: bytes, unit: bytes, room: int) -> bytes:
    return prefix + unit * (room // len(unit)) + b"\r\n"


ROOM = MAX_HEADER_BYTES - 2048  # the header limit, less the other fields


def rfc2231_name() -> bytes:
    pieces = []
    n = 0
    total = 0
    while total < ROOM:
        piece = f";\r\n name*{n}*=x".encode()
        pieces.append(piece)
        total += len(piece)
        n += 1
    return b"".join(pieces)


def filler_fields() -> bytes:
    line = b"X-Filler: " + b"v" * 60 + b"\r\n"
    return line * (ROOM // len(line))


# --------------------------------------------------------------------------- path building


def ec_ca(cn: str, issuer: devpki.Issued | None, key, **kw) -> devpki.Issued:
    return devpki.issue(cn, issuer=issuer, ca=True, key=key, key_kind="ec", key_size=256, **kw)


ROOT_KEY, EVIL_KEY = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
BOUNDS_ROOT = ec_ca("Bounds Root", None, ROOT_KEY)
EVIL = ec_ca("Evil CA", None, EVIL_KEY)
EVIL_COPIES = tuple(
    ec_ca("Evil CA", EVIL, EVIL_KEY, not_before=NOW - (n + 1) * devpki.dt.timedelta(days=1)) for n in range(10)
)
EVIL_LEAF = devpki.issue("alice@a.test", email="alice@a.test", issuer=EVIL, key=ALICE.key)


def decide_after(signer_anchor: devpki.Issued) -> Callable[[Opened | Rejected], str]:
    from anchors.source import StaticAnchors
    from trust import OfflineFetcher, Purpose, TrustService
    from trust.anchor_source import Direction

    def decide(result: Opened | Rejected) -> str:
        if not isinstance(result, Opened):
            return ""
        service = TrustService(StaticAnchors((signer_anchor.ref,)), OfflineFetcher())
        decision = asyncio.run(
            service.decide(
                result.signature.signer, purpose=Purpose.SIGNING, bound_to="alice@a.test", local_domain="b.test",
                direction=Direction.INCOMING, at=NOW, intermediates=result.signature.certificates,
            )
        )
        failure = decision.failure
        return ", trusted" if failure is None else f", {failure.check.value} after {service.paths_tried} paths"

    return decide


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Attack:
    name: str
    recipe: Callable[[], Recipe]
    after: Callable[[Opened | Rejected], str] | None = None


def attacks() -> list[Attack]:
    return [
        Attack("recipients", lambda: Recipe(enveloped_tweak=many_recipients)),
        Attack("signers", lambda: Recipe(signed_tweak=many_signers)),
        Attack("certificates", lambda: Recipe(chain=(A.intermediate,) * (MAX_CMS_CERTIFICATES - 1))),
        Attack("signed-attrs", lambda: Recipe(signed_tweak=many_signed_attributes)),
        Attack("pieces", lambda: Recipe(enveloped_tweak=many_pieces)),
        Attack("ber-nesting", lambda: Recipe(enveloped_tweak=ber_nesting(deepest_opening_nesting()))),
        Attack("ber-elements", lambda: Recipe(enveloped_tweak=many_elements)),
        Attack("mime-params", lambda: Recipe(part=rfc2231_name())),
        Attack("from-at-angle", lambda: Recipe(from_=b"<@" * (ROOM // 2))),
        Attack("headers", lambda: Recipe(extra=filler_fields(), outer=OUTER + filler_fields())),
        Attack(
            "path-building",
            lambda: Recipe(signer=EVIL_LEAF, chain=EVIL_COPIES),
        ),  # decided in main: the reference against A's root, the attack against the bounds root
    ]


def measure(raw: bytes, repeat: int, after: Callable[[Opened | Rejected], str] | None) -> tuple[float, int, str]:
    """(median CPU seconds, peak traced bytes, outcome) of open_inbound (and ``after``) on ``raw``."""

    def run() -> tuple[Opened | Rejected, str]:
        result = open_inbound(raw, [BOB.pair], LIMITS, at=NOW)
        return result, after(result) if after is not None else ""

    result, decided = run()  # warm: imports and cached certificate parses
    samples = []
    for _ in range(repeat):
        start = time.process_time()
        run()
        samples.append(time.process_time() - start)
    gc.collect()
    tracemalloc.start()
    run()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    outcome = ("opened" if isinstance(result, Opened) else f"rejected {result.reason.value}") + decided
    return statistics.median(samples), peak, outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 MiB only")
    parser.add_argument("--classes", help="comma-separated attack classes (default: all)")
    args = parser.parse_args()
    sizes = {"1 MiB": SIZES["1 MiB"]} if args.quick else SIZES
    chosen = attacks()
    if args.classes:
        wanted = set(args.classes.split(","))
        chosen = [a for a in chosen if a.name in wanted]
    header = (
        f"{'class':14} {'size':>7} {'bytes':>10} {'valid ms':>9} {'worst ms':>9} {'time':>6} "
        f"{'valid MiB':>9} {'worst MiB':>9} {'mem':>6}  outcome"
    )
    print(header)
    print("-" * len(header))
    misses = []
    for label, target in sizes.items():
        repeat = 5 if target <= MiB else 3 if target <= 10 * MiB else 1
        valid = fit(Recipe(), target)
        valid_time, valid_peak, valid_outcome = measure(valid, repeat, None)
        assert valid_outcome == "opened", valid_outcome
        decided_reference: tuple[float, int] | None = None
        for attack in chosen:
            after = attack.after
            reference = (valid_time, valid_peak)
            if attack.name == "path-building":
                after = decide_after(BOUNDS_ROOT)
                if decided_reference is None:
                    t, p, reference_outcome = measure(valid, repeat, decide_after(A.root))
                    assert reference_outcome == "opened, trusted", reference_outcome
                    decided_reference = (t, p)
                reference = decided_reference
            worst = fit(attack.recipe(), target)
            t, p, outcome = measure(worst, repeat, after)
            time_ratio, mem_ratio = t / reference[0], p / reference[1]
            flag = "" if time_ratio <= 2 and mem_ratio <= 3 else "  MISS"
            if flag:
                misses.append(f"{attack.name} at {label}")
            print(
                f"{attack.name:14} {label:>7} {len(worst):>10} {reference[0] * 1000:>9.1f} {t * 1000:>9.1f} "
                f"{time_ratio:>5.2f}x {reference[1] / MiB:>9.1f} {p / MiB:>9.1f} {mem_ratio:>5.2f}x  {outcome}{flag}",
                flush=True,
            )
            del worst
            gc.collect()
        del valid
    print(f"valid message: {len(SIZES)} sizes, sealed AES-256-CBC, signed SHA-256, opened by open_inbound")
    print("targets: time <= 2x, peak Python memory <= 3x the valid message's (tracemalloc)")
    print("misses: " + (", ".join(misses) if misses else "none"))


if __name__ == "__main__":
    main()
