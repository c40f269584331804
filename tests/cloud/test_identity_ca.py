"""The fleet CA: two tiers, the root apart from the online data, keys private and optionally
encrypted; ``bankiot cloud ca init`` and ``ca crl`` with one-line errors."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy.engine import URL

from cloud.identity.ca import (
    CA_PASSPHRASE_VARIABLE,
    ROOT_PASSPHRASE_VARIABLE,
    default_root_dir,
    init_ca,
    load_ca,
)
from cloud.identity.errors import CAExists, CANotInitialised, InvalidRequest, KeyFileError
from provisioning.cli import main
from tests.cloud.identity_actions import enroll_new, running_cloud


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def load(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def constraints(cert: x509.Certificate) -> x509.BasicConstraints:
    return cert.extensions.get_extension_for_class(x509.BasicConstraints).value


def test_init_makes_a_root_apart_and_an_issuing_ca_online(tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = init_ca(data, environ={})
    root_dir = default_root_dir(data)
    assert result.root_created and result.root_dir == root_dir == tmp_path / "data-root-ca"
    assert mode(root_dir / "root.key") == 0o600 and mode(root_dir) == 0o700
    assert mode(data / "ca" / "issuing.key") == 0o600 and mode(data / "ca") == 0o700
    assert not list(data.rglob("root.key"))

    [root] = load(root_dir / "root.pem")
    [issuing, root_copy] = load(data / "ca" / "chain.pem")
    assert root_copy == root == load(data / "ca" / "root.pem")[0]
    assert (constraints(root).ca, constraints(root).path_length) == (True, 1)
    assert (constraints(issuing).ca, constraints(issuing).path_length) == (True, 0)
    assert issuing.issuer == root.subject != issuing.subject
    issuing.verify_directly_issued_by(root)
    root.verify_directly_issued_by(root)
    for cert in (root, issuing):
        key = cert.public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
    assert root.not_valid_after_utc > issuing.not_valid_after_utc

    ca = load_ca(data, {})
    assert ca.issuing == issuing and ca.root == root
    crl = x509.load_pem_x509_crl((data / "crl.pem").read_bytes())  # a broker can start now
    issuing_key = issuing.public_key()
    assert isinstance(issuing_key, ec.EllipticCurvePublicKey)
    assert crl.is_signature_valid(issuing_key) and len(crl) == 0
    assert crl.issuer == issuing.subject


def test_init_refuses_to_overwrite_or_to_keep_the_root_online(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with pytest.raises(InvalidRequest, match="must not be inside the data folder"):
        init_ca(data, data / "root", environ={})
    with pytest.raises(CANotInitialised, match="run `bankiot cloud ca init`"):
        load_ca(data, {})
    init_ca(data, environ={})
    with pytest.raises(CAExists, match="already exists"):
        init_ca(data, environ={})


def test_keys_can_be_encrypted_with_passphrases_from_the_environment(tmp_path: Path) -> None:
    secrets = {ROOT_PASSPHRASE_VARIABLE: "root words", CA_PASSPHRASE_VARIABLE: "online words"}
    root_dir = tmp_path / "root"
    init_ca(tmp_path / "one", root_dir, environ=secrets)
    assert b"ENCRYPTED PRIVATE KEY" in (root_dir / "root.key").read_bytes()
    assert b"ENCRYPTED PRIVATE KEY" in (tmp_path / "one" / "ca" / "issuing.key").read_bytes()
    with pytest.raises(KeyFileError, match="is encrypted: set BANKIOT_CA_PASSPHRASE"):
        load_ca(tmp_path / "one", {})
    with pytest.raises(KeyFileError, match="wrong BANKIOT_CA_PASSPHRASE"):
        load_ca(tmp_path / "one", {CA_PASSPHRASE_VARIABLE: "guess"})
    one = load_ca(tmp_path / "one", secrets)

    # the same offline root signs a second issuing CA; it needs its own passphrase
    with pytest.raises(KeyFileError, match="BANKIOT_ROOT_CA_PASSPHRASE"):
        init_ca(tmp_path / "two", root_dir, environ={})
    result = init_ca(tmp_path / "two", root_dir, environ=secrets)
    assert not result.root_created
    two = load_ca(tmp_path / "two", secrets)
    assert two.issuing != one.issuing
    assert two.root == one.root  # both chains end at the same root
    two.issuing.verify_directly_issued_by(one.root)


def test_an_encrypted_issuing_key_serves_with_its_passphrase(
    database_url: URL, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = {CA_PASSPHRASE_VARIABLE: "online words"}
    monkeypatch.setenv(CA_PASSPHRASE_VARIABLE, "online words")  # what the app reads
    with running_cloud(database_url, tmp_path, ca_environ=secrets) as cloud:
        assert b"ENCRYPTED" in (cloud.data_dir / "ca" / "issuing.key").read_bytes()
        _, answer = enroll_new(cloud, "gw-encrypted")
        assert answer["certificate"].startswith("-----BEGIN CERTIFICATE-----")


def test_cli_ca_init_and_crl(
    database_url: URL,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    monkeypatch.setenv("BANKIOT_DATABASE_URL", database_url.render_as_string(hide_password=False))
    data, root = tmp_path / "data", tmp_path / "offline"
    assert main(["cloud", "ca", "init", "--data-dir", str(data), "--root-dir", str(root)]) == 0
    out = capsys.readouterr().out
    assert "move root.key offline" in out and str(root) in out
    first = x509.load_pem_x509_crl((data / "crl.pem").read_bytes())

    assert main(["cloud", "ca", "init", "--data-dir", str(data), "--root-dir", str(root)]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "already exists" in err

    assert main(["cloud", "ca", "crl", "--data-dir", str(data)]) == 0
    second = x509.load_pem_x509_crl((data / "crl.pem").read_bytes())
    number = [
        c.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        for c in (first, second)
    ]
    assert number[1] == number[0] + 1

    assert main(["cloud", "ca", "crl", "--data-dir", str(tmp_path / "empty")]) == 1
    assert "not initialised" in capsys.readouterr().err
