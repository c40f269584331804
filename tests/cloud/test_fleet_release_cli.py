"""``bankiot firmware sign`` then ``bankiot fleet release ...`` against a real HTTP server."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from provisioning.cli import cli
from tests.cloud.fleet_actions import served_app
from tests.cloud.people_actions import add_operator, make_token, sign_in
from tests.cloud.release_actions import FILES, Releases, make_bundle


@pytest.fixture
def site(rel: Releases) -> Iterator[str]:
    """The release app on a real HTTP server; its base URL."""
    with served_app(rel.app) as url:
        yield url


def bankiot(url: str, token: str, *args: str) -> tuple[int, str]:
    env = {"BANKIOT_URL": url, "BANKIOT_TOKEN": token}
    result = CliRunner().invoke(cli, list(args), env=env)
    return result.exit_code, result.output


def test_sign_upload_list_show_retire(site, rel) -> None:
    add_operator(rel.app, "ops", "operations")
    token = make_token(sign_in(rel.app, "ops"))
    bundle = make_bundle(rel.work / "bundle")
    key = str(rel.key)
    code, out = bankiot(site, token, "firmware", "sign", str(bundle), "--key", key,
                        "--board", "esp32", "--version", "1.4.0")  # fmt: skip
    assert code == 0, out
    distinct = len(set(FILES.values()))
    code, out = bankiot(site, token, "fleet", "release", "upload", str(bundle))
    assert code == 0, out
    assert out.splitlines()[-1] == (
        "release 1: esp32 1.4.0 ready (%d files sent, 0 already stored)" % distinct
    )
    # A new version changing one file: only that file is sent.
    (bundle / "files" / "main.py").write_bytes(b"import app  # 1.5.0\n")
    code, out = bankiot(site, token, "firmware", "sign", str(bundle), "--key", key,
                        "--board", "esp32", "--version", "1.5.0")  # fmt: skip
    assert code == 0, out
    code, out = bankiot(site, token, "fleet", "release", "upload", str(bundle), "--json")
    assert code == 0, out
    second = json.loads(out[out.index("{") :])
    assert second["status"] == "ready" and second["id"] == 2
    # Uploading the same bundle again is the same release, nothing sent.
    code, out = bankiot(site, token, "fleet", "release", "upload", str(bundle))
    assert out.splitlines()[-1] == (
        "release 2: esp32 1.5.0 ready (0 files sent, %d already stored)" % distinct
    )

    code, out = bankiot(site, token, "fleet", "release", "list", "--json")
    assert code == 0, out
    listed = json.loads(out)
    assert [(r["id"], r["version"], r["status"]) for r in listed] == [
        (1, "1.4.0", "ready"),
        (2, "1.5.0", "ready"),
    ]
    code, out = bankiot(site, token, "fleet", "release", "list")
    assert code == 0 and out.splitlines()[0].split()[:4] == ["id", "board", "version", "status"]
    code, out = bankiot(site, token, "fleet", "release", "show", "2")
    main_hash = hashlib.sha256(b"import app  # 1.5.0\n").hexdigest()
    assert code == 0 and "%s  20 bytes  /main.py" % main_hash[:12] in out
    code, out = bankiot(site, token, "fleet", "release", "retire", "1")
    assert (code, out) == (0, "release 1: esp32 1.4.0 retired\n")
    code, out = bankiot(site, token, "fleet", "release", "list", "--status", "retired", "--json")
    assert [r["id"] for r in json.loads(out)] == [1]


def test_errors_are_one_line(site, rel, tmp_path) -> None:
    add_operator(rel.app, "ops", "operations")
    token = make_token(sign_in(rel.app, "ops"))
    unsigned = make_bundle(tmp_path / "unsigned")
    code, out = bankiot(site, token, "fleet", "release", "upload", str(unsigned))
    assert code == 1 and out.count("\n") == 1
    assert out.startswith("Error: %s is not a signed bundle: manifest.json is missing" % unsigned)
    # Signed by a key the cloud does not trust.
    other = tmp_path / "other.pem"
    assert bankiot(site, token, "firmware", "release-key", "new", "--out", str(other))[0] == 0
    code, out = bankiot(site, token, "firmware", "sign", str(unsigned), "--key", str(other),
                        "--board", "picow", "--version", "1.0.0")  # fmt: skip
    assert code == 0, out
    code, out = bankiot(site, token, "fleet", "release", "upload", str(unsigned))
    assert code == 1 and out.count("\n") == 1
    assert out.startswith("Error: POST /api/fleet/releases: HTTP 403 signed by key")
    code, out = bankiot(site, token, "fleet", "release", "show", "99")
    assert (code, out) == (1, "Error: GET /api/fleet/releases/99: HTTP 404 no such release\n")
