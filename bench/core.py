"""CPU time per message of open_inbound and seal_outbound, beside the crypto floor.

For a 10 KB Direct message carrying a C-CDA document and a 10 MB one, in one
run on the same sizes:
- ``seal_outbound`` and ``open_inbound`` CPU time per message;
- the crypto floor: one raw RSA-2048 decrypt of a content key, AES-256-CBC
  over the same ciphertext, one SHA-256 over the signed content and one RSA
  verify, with ``cryptography`` and nothing else;
- the peak of Python memory allocated while opening the 10 MB message
  (tracemalloc), as a multiple of the message size.

Targets (issue 2): open_inbound within 2x the floor at 10 KB; peak memory
within 3x the message size at 10 MB. Run: .venv/bin/python bench/core.py
"""

from __future__ import annotations

import base64
import gc
import hashlib
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import padding as asym
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from gateway import devpki
from gateway.core import Opened, SealOptions, open_inbound, seal_outbound


def ccda(size: int) -> bytes:
    entry = b'  <entry><observation classCode="OBS" moodCode="EVN"><code code="8480-6"/></observation></entry>\r\n'
    head = b'<?xml version="1.0"?>\r\n<ClinicalDocument xmlns="urn:hl7-org:v3">\r\n'
    return head + entry * max(1, (size - len(head)) // len(entry)) + b"</ClinicalDocument>\r\n"


def submitted(attachment: bytes) -> bytes:
    encoded = base64.encodebytes(attachment).replace(b"\n", b"\r\n")
    return (
        b'From: alice@a.test\r\nTo: bob@b.test\r\nSubject: CCD\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="x"\r\n\r\n'
        b"--x\r\nContent-Type: text/plain\r\n\r\nSummary attached.\r\n"
        b"--x\r\nContent-Type: text/xml; name=ccd.xml\r\nContent-Transfer-Encoding: base64\r\n"
        b"Content-Disposition: attachment; filename=ccd.xml\r\n\r\n" + encoded + b"--x--\r\n"
    )


def cpu_per_call(fn, repeat: int, rounds: int = 5) -> float:
    """Median over rounds of CPU seconds per call."""
    samples = []
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(repeat):
            fn()
        samples.append((time.process_time() - start) / repeat)
    return statistics.median(samples)


def crypto_floor(bob, signer, ciphertext_len: int, signed_len: int):
    """The cheapest honest inbound: decrypt a key, decrypt the content, hash it, verify one signature."""
    cek, iv = b"k" * 32, b"i" * 16
    wrapped_key = bob.cert.public_key().encrypt(cek, asym.PKCS1v15())
    plaintext = b"p" * (ciphertext_len - 16)
    padder = padding.PKCS7(128).padder()
    enc = Cipher(algorithms.AES(cek), modes.CBC(iv)).encryptor()
    ciphertext = enc.update(padder.update(plaintext) + padder.finalize()) + enc.finalize()
    signed = b"s" * signed_len
    signature = signer.key.sign(b"attrs" * 20, asym.PKCS1v15(), hashes.SHA256())
    public = signer.cert.public_key()

    def floor():
        key = bob.key.decrypt(wrapped_key, asym.PKCS1v15())
        dec = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
        dec.update(ciphertext) + dec.finalize()
        hashlib.sha256(signed).digest()
        public.verify(signature, b"attrs" * 20, asym.PKCS1v15(), hashes.SHA256())

    return floor


def measure(label: str, attachment_size: int, repeat: int) -> dict:
    a, b = devpki.hisp("a.test"), devpki.hisp("b.test")
    alice, bob = a.address("alice"), b.address("bob")
    plain = submitted(ccda(attachment_size))
    options = SealOptions(at=devpki.NOW)
    sealed = seal_outbound(plain, alice.pair, [bob.ref], options).message
    opened = open_inbound(sealed, [bob.pair], at=devpki.NOW)
    assert isinstance(opened, Opened), opened
    ciphertext_len = len(base64.b64decode(sealed.split(b"\r\n\r\n", 1)[1]))
    seal_cpu = cpu_per_call(lambda: seal_outbound(plain, alice.pair, [bob.ref], options), repeat)
    open_cpu = cpu_per_call(lambda: open_inbound(sealed, [bob.pair], at=devpki.NOW), repeat)
    floor_cpu = cpu_per_call(crypto_floor(bob, alice, ciphertext_len, len(opened.content)), repeat)
    gc.collect()
    tracemalloc.start()
    result = open_inbound(sealed, [bob.pair], at=devpki.NOW)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del result
    return {
        "label": label,
        "size": len(sealed),
        "seal_ms": seal_cpu * 1000,
        "open_ms": open_cpu * 1000,
        "floor_ms": floor_cpu * 1000,
        "open_over_floor": open_cpu / floor_cpu,
        "peak_over_size": peak / len(sealed),
    }


def main() -> None:
    rows = [measure("10 KB", 3_500, 300), measure("10 MB", 5_300_000, 2)]
    print(f"{'message':>8} {'bytes':>10} {'seal ms':>9} {'open ms':>9} {'floor ms':>9} {'open/floor':>11} {'peak/size':>10}")
    for r in rows:
        print(
            f"{r['label']:>8} {r['size']:>10} {r['seal_ms']:>9.3f} {r['open_ms']:>9.3f} {r['floor_ms']:>9.3f} "
            f"{r['open_over_floor']:>10.2f}x {r['peak_over_size']:>9.2f}x"
        )
    print("targets: open/floor <= 2.0x at 10 KB; peak/size <= 3.0x at 10 MB (Python allocations, tracemalloc)")


if __name__ == "__main__":
    main()
