"""``POST /api/bank/statements``, ``GET /api/bank/accounts[/<id>/transactions]`` and
``bankiot bank import``: the same files, the same one-line refusals."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from apiflask import APIFlask
from sqlalchemy import func, select
from sqlalchemy.engine import URL

from cloud.bank.models import BankTransaction
from cloud.db import Database
from provisioning.cli import main
from tests.cloud import bank_samples as samples
from tests.cloud.people_actions import bearer, body, make_token, seed, sign_in

PATH = "/api/bank/statements"


@pytest.fixture
def ops(cloud_app: APIFlask) -> dict[str, str]:
    """The Authorization header of an operations API token."""
    seed(cloud_app)
    return bearer(make_token(sign_in(cloud_app, "ops")))


def upload(*files: tuple[bytes, str], **fields: str) -> dict:
    return {"file": [(io.BytesIO(data), name) for data, name in files], **fields}


def test_import_files_and_page_through_transactions(
    cloud_app: APIFlask, ops: dict[str, str]
) -> None:
    client = cloud_app.test_client()
    files = [(samples.camt(7), "s.xml"), (samples.MT940_SECOND_DAY, "d2.sta")]
    response = client.post(PATH, data=upload(*files), headers=ops)
    assert response.status_code == 200, response.json
    summaries = body(response)["files"]
    assert [(s["file"], s["format"], s["new"], s["present"]) for s in summaries] == [
        ("s.xml", "camt", 4, 0),
        ("d2.sta", "mt940", 1, 0),
    ]
    account = summaries[0]["accounts"][0]
    assert summaries[1]["accounts"] == [account]  # the same IBAN and currency
    again = client.post(PATH, data=upload(*files), headers=ops)
    assert [(s["new"], s["present"]) for s in body(again)["files"]] == [(0, 4), (0, 1)]
    url = "/api/bank/accounts/%d/transactions" % account
    page = body(client.get(url, query_string={"limit": 3}, headers=ops))
    assert page["account"]["identifier"] == samples.IBAN
    assert [(t["amount"], t["direction"]) for t in page["transactions"]] == [
        ("1500.00000", "CRDT"),
        ("42.10000", "DBIT"),
        ("100.00000", "DBIT"),
    ]
    assert page["transactions"][0]["bank_code"]["gvc"] == "166"
    rest = body(client.get(url, query_string={"after": page["next"]}, headers=ops))
    assert [t["amount"] for t in rest["transactions"]] == ["200.00000", "62.90000"]
    assert rest["next"] is None
    accounts = body(client.get("/api/bank/accounts", headers=ops))["accounts"]
    assert [a["id"] for a in accounts] == [account]
    assert client.get("/api/bank/accounts/999/transactions", headers=ops).status_code == 404


def test_whole_body_upload_and_csv_with_mapping(cloud_app: APIFlask, ops: dict[str, str]) -> None:
    client = cloud_app.test_client()
    response = client.post(
        PATH + "?name=t.json",
        data=samples.OB_ACCOUNTS,
        headers={**ops, "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.json
    assert body(response)["files"][0]["file"] == "t.json"
    form = upload((samples.CSV, "e.csv"), format="csv")
    form["mapping"] = (io.BytesIO(samples.CSV_MAPPING), "bank.toml")
    response = client.post(PATH, data=form, headers=ops)
    assert response.status_code == 200, response.json
    assert body(response)["files"][0]["new"] == 3


def test_refusals_are_one_line_and_keep_earlier_files(
    cloud_app: APIFlask, ops: dict[str, str]
) -> None:
    client = cloud_app.test_client()
    bad = samples.OB_TRANSACTIONS.replace(b'"Amount": {"Amount": "4.35", "Currency": "GBP"},', b"")
    files = [(samples.OB_ACCOUNTS, "a.json"), (bad, "t.json")]
    response = client.post(PATH, data=upload(*files), headers=ops)
    assert response.status_code == 422
    error = body(response)
    assert error["message"] == "t.json: $.Data.Transaction[1].Amount (line %d): missing Amount" % (
        samples.line_of(bad, '"TransactionId": "124"') - 2
    )
    assert [s["file"] for s in error["detail"]["imported"]] == ["a.json"]
    with cloud_app.app_context():
        db = cloud_app.extensions["bankiot.db"]
        with db.sessions() as session:
            assert session.scalar(select(func.count()).select_from(BankTransaction)) == 0
    bomb = client.post(PATH, data=upload((samples.BOMB, "bomb.xml")), headers=ops)
    assert bomb.status_code == 422 and "entity" in body(bomb)["message"]


def test_only_operations(cloud_app: APIFlask, ops: dict[str, str]) -> None:
    client = cloud_app.test_client()
    assert client.post(PATH, data=upload((samples.camt(2), "s.xml"))).status_code == 401
    manager = bearer(make_token(sign_in(cloud_app, "maria")))
    response = client.post(PATH, data=upload((samples.camt(2), "s.xml")), headers=manager)
    assert response.status_code == 403
    assert client.get("/api/bank/accounts", headers=manager).status_code == 403


def test_the_command(
    database_url: URL, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    url = database_url.render_as_string(hide_password=False)
    monkeypatch.setenv("BANKIOT_DATABASE_URL", url)
    good, bad = tmp_path / "s.xml", tmp_path / "bad.sta"
    good.write_bytes(samples.camt(4, "052"))
    broken = samples.MT940.replace(b":61:2611281128D42,10", b":61:26112X1128D42,10")
    bad.write_bytes(broken)
    args = ["bank", "import", "--data-dir", str(tmp_path / "data")]
    assert main([*args, str(good), str(bad)]) == 1
    captured = capsys.readouterr()
    assert "s.xml (camt): 1 statement, 4 new, 0 already present" in captured.out
    error_lines = [line for line in captured.err.splitlines() if line.startswith("refused: ")]
    assert error_lines == [
        "refused: %s: :61: (line %d): the field does not match MT940's format: "
        "'26112X1128D42,10NMSC001-REF//BANKREF-0002'" % (bad, samples.line_of(broken, "26112X"))
    ]
    assert "1 of 2 files refused" in captured.err
    assert main([*args, str(good)]) == 0
    assert "0 new, 4 already present" in capsys.readouterr().out
    mapping = tmp_path / "bank.toml"
    mapping.write_bytes(samples.CSV_MAPPING)
    export = tmp_path / "e.csv"
    export.write_bytes(samples.CSV)
    assert main([*args, "--format", "csv", "--mapping", str(mapping), str(export)]) == 0
    # the export's first coffee is the report's (same content, neither has a servicer's
    # reference); its salary has no reference where the report's has one, so it is new
    assert "e.csv (csv): 1 statement, 2 new, 1 already present" in capsys.readouterr().out
    database = Database(url)
    with database.sessions() as session:
        assert session.scalar(select(func.count()).select_from(BankTransaction)) == 6
    database.dispose()
