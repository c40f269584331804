"""Enrollments per second on SQLite, against raw ``cryptography`` certificate signing.

A report, not a pass/fail. In one run, on a fresh SQLite database in a temporary folder
with a fresh fleet CA, it times:

- the reference: ``cryptography``'s ``CertificateBuilder.sign`` of a device certificate of
  the same shape (P-256 key, ECDSA-SHA256, the same extensions) with the issuing CA's key:
  the least any enrollment must cost;
- the service: ``cloud.identity.enrollment.enroll`` plus the commit: redeem the claim
  atomically, check the CSR (parse, self-signature, key, subject), create the device,
  sign and record the certificate, make and wrap an envelope key, audit;
- the API: ``POST /api/identity/enroll`` through the Flask test client: the service plus
  JSON and schema validation, the response, and rewriting the broker ACL.

Device keys, CSRs and claim tokens are made beforehand (that is the device's and the
operator's work, not the enrollment's). Prints enrollments per second and the ratio of
each subject's cost per enrollment to the reference's.

Run: ``.venv/bin/python bench/enrollment.py [--count 200] [--json]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cloud.config import load_config
from cloud.db import database
from cloud.fleet.models import Branch
from cloud.identity import claims, enrollment
from cloud.identity.ca import CAPaths, init_ca, load_ca
from cloud.identity.keyfiles import read_private_key
from cloud.identity.keys import load_wrapper
from cloud.migrations import upgrade


def csr_for(uid: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, uid)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def reference_signing(issuing: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Callable:
    """One raw device certificate signing, with a key made beforehand."""
    device_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    usage = x509.KeyUsage(True, False, False, False, False, False, False, False, False)

    def sign() -> x509.Certificate:
        now = dt.datetime.now(dt.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gw-ref")]))
            .issuer_name(issuing.subject)
            .public_key(device_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage, critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier("urn:x:gw-ref")]),
                False,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(device_key), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), False
            )
            .sign(key, hashes.SHA256())
        )

    return sign


def per_second(count: int, run: Callable[[int], None]) -> float:
    """``count`` calls of ``run(i)``, as calls per second."""
    start = time.perf_counter()
    for i in range(count):
        run(i)
    return count / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Enrollments per second on SQLite.")
    parser.add_argument("--count", type=int, default=200, help="enrollments per subject (200)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    count = args.count

    folder = Path(tempfile.mkdtemp(prefix="bankiot-bench-enroll-"))
    try:
        from cloud.app import create_app

        data = folder / "data"
        init_ca(data, folder / "root", environ={})
        url = "sqlite:///%s" % (folder / "bench.sqlite3")
        upgrade(url)
        config = load_config(environ={}, overrides={"data_dir": str(data), "database_url": url})
        app = create_app(config)
        ca, wrapper = load_ca(data, {}), load_wrapper(data, {})
        print("preparing %d CSRs and claims per subject ..." % count, file=sys.stderr)
        with app.app_context(), database().sessions() as db:
            branch = Branch(code="bench", name="Bench")
            db.add(branch)
            db.commit()
            now = dt.datetime.now(dt.UTC)
            tokens = [
                claims.create_claim(db, "bench", branch.id, "gateway", now)[1]
                for _ in range(2 * count)
            ]
            db.commit()
        csrs = [csr_for("gw-%05d" % i) for i in range(2 * count)]

        print("timing ...", file=sys.stderr)
        issuing_key = read_private_key(CAPaths.of(data).issuing_key, None, "-")
        sign = reference_signing(ca.issuing, issuing_key)
        reference = per_second(count, lambda _i: sign())

        with app.app_context(), database().sessions() as db:

            def service(i: int) -> None:
                enrollment.enroll(
                    db, lambda: ca, wrapper, tokens[i], csrs[i], dt.datetime.now(dt.UTC)
                )
                db.commit()

            service_rate = per_second(count, service)

        client = app.test_client()

        def api(i: int) -> None:
            j = count + i
            response = client.post(
                "/api/identity/enroll", json={"token": tokens[j], "csr": csrs[j]}
            )
            assert response.status_code == 201, response.json

        api_rate = per_second(count, api)
        app.extensions["bankiot.db"].dispose()
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    figures = {
        "count": count,
        "reference": "cryptography CertificateBuilder.sign, same certificate shape, P-256",
        "reference_per_s": round(reference, 1),
        "service_per_s": round(service_rate, 1),
        "api_per_s": round(api_rate, 1),
        "ratio_service": round(reference / service_rate, 2),
        "ratio_api": round(reference / api_rate, 2),
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print("Enrollment on SQLite, %d each (cost per enrollment vs the reference)" % count)
    print("  certificate signing alone (reference)   %8.1f /s" % reference)
    print(
        "  enroll service + commit                 %8.1f /s   %6.2f x"
        % (service_rate, reference / service_rate)
    )
    print(
        "  POST /api/identity/enroll               %8.1f /s   %6.2f x"
        % (api_rate, reference / api_rate)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
