"""The releases API: signed uploads, content-addressed files, readiness, retirement and the
device downloads, on SQLite and PostgreSQL.

Signatures are checked with ``cryptography`` and file hashes with ``hashlib``, independently
of the code under test.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from cloud.config import ConfigError
from cloud.db import database
from cloud.fleet import releases as release_rules
from provisioning import release_signing
from tests.cloud.people_actions import add_branch, add_operator, bearer, make_token, sign_in
from tests.cloud.release_actions import (
    FILES,
    Releases,
    audit_actions,
    counts,
    signed_bundle,
    upload_body,
)
from tests.support.cloud import make_app

OCTETS = {"Content-Type": "application/octet-stream"}


@pytest.fixture
def ops(rel: Releases) -> dict[str, str]:
    add_operator(rel.app, "ops", "operations")
    return bearer(make_token(sign_in(rel.app, "ops")))


def put_files(rel: Releases, ops: dict[str, str], release_id: int, bundle: Path) -> dict:
    """PUT every missing file of the release from ``bundle``; the last answer."""
    client = rel.app.test_client()
    answer = client.get("/api/fleet/releases/%d" % release_id, headers=ops).json
    assert answer is not None
    by_hash = {f["sha256"]: f["path"] for f in answer["files"]}
    for sha256 in answer["missing"]:
        data = (bundle / "files" / by_hash[sha256].lstrip("/")).read_bytes()
        response = client.put(
            "/api/fleet/releases/%d/files/%s" % (release_id, sha256),
            data=data,
            headers={**ops, **OCTETS},
        )
        assert response.status_code == 200, response.json
        answer = response.json
    assert answer is not None
    return answer


def test_signed_upload_becomes_ready_and_devices_download_it(rel, ops) -> None:
    client = rel.app.test_client()
    bundle = signed_bundle(rel, "b1")
    response = client.post("/api/fleet/releases", json=upload_body(bundle), headers=ops)
    assert response.status_code == 201, response.json
    created = response.json
    expected_hashes = sorted({hashlib.sha256(d).hexdigest() for d in FILES.values()})
    assert created["status"] == "incomplete" and not created["ready"]
    assert (created["board"], created["version"], created["file_count"]) == ("esp32", "1.4.0", 5)
    assert created["missing"] == expected_hashes  # two empty files, one blob
    assert created["created_by"] == "operator:ops"
    release_id = created["id"]
    assert client.get("/releases/v1/%d/manifest.json" % release_id).status_code == 404

    done = put_files(rel, ops, release_id, bundle)
    assert done["status"] == "ready" and done["missing"] == [] and done["ready_at"]
    assert all(f["stored"] for f in done["files"])
    blob_dir = rel.data_dir / "releases" / "blobs"
    assert sorted(p.name for p in blob_dir.iterdir()) == expected_hashes

    # A device, without credentials: the exact signed bytes, a signature that verifies.
    manifest = client.get("/releases/v1/%d/manifest.json" % release_id)
    assert manifest.status_code == 200
    assert manifest.data == (bundle / "manifest.json").read_bytes()
    assert "immutable" in manifest.headers["Cache-Control"]
    sig = client.get("/releases/v1/%d/manifest.sig" % release_id).json
    assert sig is not None
    public = serialization.load_pem_public_key(rel.key.with_suffix(".pub").read_bytes())
    assert isinstance(public, Ed25519PublicKey)
    public.verify(base64.b64decode(sig["signature"]), manifest.data)
    for name, data in FILES.items():
        sha256 = hashlib.sha256(data).hexdigest()
        blob = client.get("/releases/v1/blobs/%s" % sha256)
        assert (blob.status_code, blob.data) == (200, data), name
        assert blob.headers["ETag"] == '"%s"' % sha256
    assert client.get("/releases/v1/blobs/%s" % ("0" * 64)).status_code == 404
    assert client.get("/releases/v1/blobs/not-a-hash").status_code == 404

    listed = client.get("/api/fleet/releases", headers=ops).json
    assert listed is not None
    assert [(r["id"], r["status"], r["missing_count"]) for r in listed["releases"]] == [
        (release_id, "ready", 0)
    ]
    actions = [action for _, action, _ in audit_actions(rel.app)]
    assert actions == ["release.create"] + ["release.file"] * len(expected_hashes)


def test_same_manifest_again_is_the_same_release_another_is_refused(rel, ops) -> None:
    client = rel.app.test_client()
    body = upload_body(signed_bundle(rel, "b1"))
    first = client.post("/api/fleet/releases", json=body, headers=ops)
    again = client.post("/api/fleet/releases", json=body, headers=ops)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json is not None and again.json is not None
    assert again.json["id"] == first.json["id"]
    other = upload_body(signed_bundle(rel, "b2", files={**FILES, "main.py": b"other\n"}))
    response = client.post("/api/fleet/releases", json=other, headers=ops)
    assert response.status_code == 409
    assert response.json is not None
    assert "esp32 1.4.0 already exists with another manifest" in response.json["message"]
    same_version_other_board = upload_body(signed_bundle(rel, "b3", board="picow"))
    assert (
        client.post("/api/fleet/releases", json=same_version_other_board, headers=ops).status_code
        == 201
    )
    assert counts(rel.app) == (2, 0, 2)


def _resigned(rel: Releases, data: bytes, key: Ed25519PrivateKey | None = None) -> dict:
    key = key or release_signing.load_private_key(rel.key)
    signature = release_signing.sign_manifest(data, key)
    return {
        "manifest": data.decode(),
        "signature": base64.b64encode(signature.signature).decode(),
        "key_id": signature.key_id,
    }


def test_refused_uploads_store_nothing(rel, ops) -> None:
    client = rel.app.test_client()
    good = upload_body(signed_bundle(rel, "b1"))
    manifest = good["manifest"].encode()
    stranger = Ed25519PrivateKey.generate()
    tampered = manifest.replace(b'"1.4.0"', b'"1.4.1"')
    pretty = json.dumps(json.loads(manifest), indent=1).encode()
    refused = {
        "forged signature": ({**good, "signature": _resigned(rel, b"other")["signature"]}, 403),
        "unknown key": (_resigned(rel, manifest, stranger), 403),
        "tampered manifest": ({**good, "manifest": tampered.decode()}, 403),
        "non-canonical manifest (signed)": (_resigned(rel, pretty), 422),
        "bad board (signed)": (_resigned(rel, manifest.replace(b"esp32", b"esp99")), 422),
        "signature not 64 bytes": (
            {**good, "signature": base64.b64encode(b"x" * 63).decode()},
            422,
        ),
        "key id not hex": ({**good, "key_id": "Z" * 16}, 422),
        "no manifest": ({**good, "manifest": ""}, 422),
    }
    for name, (body, status) in refused.items():
        response = client.post("/api/fleet/releases", json=body, headers=ops)
        assert response.status_code == status, name
        assert response.json is not None and response.json["message"], name
    message = client.post("/api/fleet/releases", json=refused["unknown key"][0], headers=ops)
    assert message.json is not None and "which is not trusted" in message.json["message"]
    assert counts(rel.app) == (0, 0, 0)


def test_files_are_checked_before_they_are_stored(rel, ops) -> None:
    client = rel.app.test_client()
    bundle = signed_bundle(rel, "b1")
    created = client.post("/api/fleet/releases", json=upload_body(bundle), headers=ops).json
    assert created is not None
    url = "/api/fleet/releases/%d/files/%%s" % created["id"]
    data = FILES["lib/app.py"]
    sha256 = hashlib.sha256(data).hexdigest()
    headers = {**ops, **OCTETS}
    not_listed = hashlib.sha256(b"not in the release").hexdigest()
    assert (
        client.put(url % not_listed, data=b"not in the release", headers=headers).status_code == 404
    )
    wrong = data.replace(b"bankiot", b"BANKIOT")  # same size, other bytes
    response = client.put(url % sha256, data=wrong, headers=headers)
    assert response.status_code == 422
    assert response.json is not None and "SHA-256" in response.json["message"]
    assert client.put(url % sha256, data=data[:-1], headers=headers).status_code == 422
    assert client.put(url % sha256, data=data + b"\n", headers=headers).status_code == 422
    assert client.put(url % "ABC", data=data, headers=headers).status_code == 404
    blob_dir = rel.data_dir / "releases" / "blobs"
    assert not blob_dir.exists() or list(blob_dir.iterdir()) == []  # no temporary left over
    assert counts(rel.app) == (1, 0, 1)
    ok = client.put(url % sha256, data=data, headers=headers)
    again = client.put(url % sha256, data=b"", headers=headers)  # stored already: not read
    assert (ok.status_code, again.status_code) == (200, 200)
    assert (blob_dir / sha256).read_bytes() == data
    assert counts(rel.app) == (1, 1, 2)


def test_a_release_sharing_files_only_misses_the_new_ones(rel, ops) -> None:
    client = rel.app.test_client()
    first = signed_bundle(rel, "b1")
    one = client.post("/api/fleet/releases", json=upload_body(first), headers=ops).json
    assert one is not None
    put_files(rel, ops, one["id"], first)
    changed = {**FILES, "main.py": b"import app  # 1.5\n"}
    second = signed_bundle(rel, "b2", version="1.5.0", files=changed)
    two = client.post("/api/fleet/releases", json=upload_body(second), headers=ops).json
    assert two is not None
    assert two["missing"] == [hashlib.sha256(changed["main.py"]).hexdigest()]
    # Everything already stored: ready at once.
    third = signed_bundle(rel, "b3", version="1.4.1")
    three = client.post("/api/fleet/releases", json=upload_body(third), headers=ops).json
    assert three is not None and three["status"] == "ready"


def test_retired_releases_stay_downloadable_but_not_usable(rel, ops) -> None:
    client = rel.app.test_client()
    bundle = signed_bundle(rel, "b1")
    created = client.post("/api/fleet/releases", json=upload_body(bundle), headers=ops).json
    assert created is not None
    release_id = created["id"]
    with (
        rel.app.app_context(),
        database().sessions() as db,
        pytest.raises(release_rules.ReleaseRefused, match="not ready"),
    ):
        release_rules.usable_release(db, release_id)
    put_files(rel, ops, release_id, bundle)
    with rel.app.app_context(), database().sessions() as db:
        assert release_rules.usable_release(db, release_id).version == "1.4.0"
    response = client.post("/api/fleet/releases/%d/retire" % release_id, headers=ops)
    assert response.status_code == 200
    assert response.json is not None and response.json["status"] == "retired"
    assert response.json["retired_by"] == "operator:ops"
    with (
        rel.app.app_context(),
        database().sessions() as db,
        pytest.raises(release_rules.ReleaseRefused, match="retired"),
    ):
        release_rules.usable_release(db, release_id)
    assert client.get("/releases/v1/%d/manifest.json" % release_id).status_code == 200
    listed = client.get("/api/fleet/releases?status=ready", headers=ops).json
    assert listed == {"releases": []}
    listed = client.get("/api/fleet/releases?status=retired&board=esp32", headers=ops).json
    assert listed is not None and [r["id"] for r in listed["releases"]] == [release_id]
    assert client.post("/api/fleet/releases/%d/retire" % release_id, headers=ops).status_code == 200
    assert [a for _, a, _ in audit_actions(rel.app)].count("release.retire") == 1
    assert client.post("/api/fleet/releases/999/retire", headers=ops).status_code == 404


def test_only_operations_changes_releases(rel, ops) -> None:
    add_branch(rel.app, "north")
    add_operator(rel.app, "maria", "branch_manager", ("north",))
    maria = bearer(make_token(sign_in(rel.app, "maria")))
    client = rel.app.test_client()
    bundle = signed_bundle(rel, "b1")
    assert (
        client.post("/api/fleet/releases", json=upload_body(bundle), headers=maria).status_code
        == 403
    )
    assert counts(rel.app) == (0, 0, 0)
    created = client.post("/api/fleet/releases", json=upload_body(bundle), headers=ops).json
    assert created is not None
    sha256 = created["missing"][0]
    put = client.put(
        "/api/fleet/releases/%d/files/%s" % (created["id"], sha256),
        data=b"",
        headers={**maria, **OCTETS},
    )
    assert put.status_code == 403
    assert (
        client.post("/api/fleet/releases/%d/retire" % created["id"], headers=maria).status_code
        == 403
    )
    shown = client.get("/api/fleet/releases/%d" % created["id"], headers=maria)
    assert shown.status_code == 200
    assert client.get("/api/fleet/releases", headers=maria).status_code == 200
    assert client.get("/api/fleet/releases").status_code == 401


def test_release_keys_from_the_default_folder_and_bad_key_files(database_url, tmp_path) -> None:
    data_dir = tmp_path / "data"
    public = release_signing.new_release_key(tmp_path / "offline" / "k.pem")
    (data_dir / "release-keys").mkdir(parents=True)
    (data_dir / "release-keys" / "k.pub").write_bytes(public.read_bytes())
    app = make_app(database_url, data_dir)
    try:
        key = release_signing.load_private_key(tmp_path / "offline" / "k.pem")
        assert list(app.extensions["bankiot.release_keys"]) == [
            hashlib.sha256(release_signing.raw_public_key(key.public_key())).digest()[:8].hex()
        ]
    finally:
        app.extensions["bankiot.db"].dispose()
    bad = tmp_path / "bad.pub"
    bad.write_text("not a key")
    with pytest.raises(ConfigError, match="is not a PEM public key"):
        make_app(database_url, data_dir, release_keys=str(bad))
    with pytest.raises(ConfigError, match="cannot be read"):
        make_app(database_url, data_dir, release_keys=str(tmp_path / "missing.pub"))
