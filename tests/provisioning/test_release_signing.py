"""Release keys and signed bundles (``provisioning.release_signing``) and their commands.

Known answers: RFC 8032's Ed25519 test vector 1, signatures and keys checked with
``cryptography`` directly, hashes with ``hashlib``, the manifest bytes with CPython's
``json`` in canonical form.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from provisioning import release_signing as rs
from provisioning.cli import cli

# RFC 8032, section 7.1, TEST 1 (the empty message).
RFC8032_SECRET = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC8032_SIGNATURE = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)

FILES = {"main.py": b"print('hi')\n", "lib/a.py": b"A = 1\n", "lib/b.py": b"A = 1\n"}


def make_bundle(root: Path, files: dict[str, bytes] = FILES) -> Path:
    for name, data in files.items():
        path = root / "files" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def test_rfc8032_vector_and_key_id() -> None:
    key = Ed25519PrivateKey.from_private_bytes(RFC8032_SECRET)
    signature = rs.sign_manifest(b"", key)
    assert signature.signature == RFC8032_SIGNATURE
    assert rs.raw_public_key(key.public_key()) == RFC8032_PUBLIC
    assert signature.key_id == hashlib.sha256(RFC8032_PUBLIC).digest()[:8].hex()


def test_new_key_is_private_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "release.pem"
    public = rs.new_release_key(path)
    assert public == tmp_path / "keys" / "release.pub"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    loaded = serialization.load_pem_public_key(public.read_bytes())
    assert isinstance(private, Ed25519PrivateKey) and isinstance(loaded, Ed25519PublicKey)
    assert rs.raw_public_key(private.public_key()) == rs.raw_public_key(loaded)
    before = path.read_bytes()
    with pytest.raises(rs.ReleaseError, match="already exists"):
        rs.new_release_key(path)
    assert path.read_bytes() == before
    os.chmod(path, 0o640)
    with pytest.raises(rs.ReleaseError, match="accessible by group or others"):
        rs.load_private_key(path)


def test_sign_writes_a_canonical_manifest_and_a_verifiable_signature(tmp_path: Path) -> None:
    key_path = tmp_path / "release.pem"
    rs.new_release_key(key_path)
    bundle = make_bundle(tmp_path / "bundle")
    rs.sign_bundle(bundle, key_path, "picow", "1.4.0")
    expected = {
        "board": "picow",
        "files": [
            {"path": "/" + name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
            for name, data in sorted(FILES.items())
        ],
        "format": 1,
        "product": "bankiot-gateway",
        "version": "1.4.0",
    }
    data = (bundle / "manifest.json").read_bytes()
    assert data == json.dumps(expected, sort_keys=True, separators=(",", ":")).encode()
    sig = json.loads((bundle / "manifest.sig").read_text())
    public = serialization.load_pem_public_key(rs.public_path(key_path).read_bytes())
    assert isinstance(public, Ed25519PublicKey)
    public.verify(base64.b64decode(sig["signature"]), data)
    assert sig["key_id"] == hashlib.sha256(rs.raw_public_key(public)).digest()[:8].hex()
    manifest = rs.verify_bundle(bundle, [public])
    assert [f.path for f in manifest.files] == ["/lib/a.py", "/lib/b.py", "/main.py"]


def test_verify_bundle_refuses_tampering(tmp_path: Path) -> None:
    key_path = tmp_path / "release.pem"
    rs.new_release_key(key_path)
    trusted = [rs.load_private_key(key_path).public_key()]
    other = [Ed25519PrivateKey.generate().public_key()]
    bundle = make_bundle(tmp_path / "bundle")
    rs.sign_bundle(bundle, key_path, "esp32", "1.0.0")
    with pytest.raises(rs.UntrustedRelease, match="not trusted"):
        rs.verify_bundle(bundle, other)
    (bundle / "files" / "lib" / "a.py").write_bytes(b"A = 2\n")  # same size, other bytes
    with pytest.raises(rs.ReleaseError, match=r"/lib/a\.py does not match its SHA-256"):
        rs.verify_bundle(bundle, trusted)
    (bundle / "files" / "lib" / "a.py").write_bytes(FILES["lib/a.py"])
    (bundle / "files" / "extra.py").write_bytes(b"")
    with pytest.raises(
        rs.ReleaseError, match=r"/extra\.py is in the bundle but not in the manifest"
    ):
        rs.verify_bundle(bundle, trusted)
    (bundle / "files" / "extra.py").unlink()
    manifest = (bundle / "manifest.json").read_bytes()
    (bundle / "manifest.json").write_bytes(manifest.replace(b'"1.0.0"', b'"1.0.1"'))
    with pytest.raises(rs.UntrustedRelease, match="does not match the manifest"):
        rs.verify_bundle(bundle, trusted)


def test_commands(tmp_path: Path) -> None:
    runner = CliRunner()
    key = tmp_path / "offline" / "release.pem"
    result = runner.invoke(cli, ["firmware", "release-key", "new", "--out", str(key)])
    assert result.exit_code == 0, result.output
    ident = rs.key_id(rs.load_private_key(key).public_key())
    assert result.output.startswith("release key %s:" % ident)
    result = runner.invoke(cli, ["firmware", "release-key", "new", "--out", str(key)])
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert "already exists" in result.output
    bundle = make_bundle(tmp_path / "bundle")
    args = ["firmware", "sign", str(bundle), "--key", str(key), "--board", "esp32"]
    result = runner.invoke(cli, [*args, "--version", "2.0.0-rc.1"])
    assert result.exit_code == 0, result.output
    assert result.output == "signed esp32 2.0.0-rc.1: 3 files, %d bytes\n" % sum(
        map(len, FILES.values())
    )
    result = runner.invoke(cli, [*args, "--version", "2.0"])
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert "version '2.0' is not MAJOR.MINOR.PATCH" in result.output
