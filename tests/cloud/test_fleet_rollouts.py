"""Staged rollouts end to end, on SQLite and PostgreSQL: a signed release uploaded through
the API, a rollout started through the API, gateways simulated with the portable core that
report their update's result and the version they run through the real ingest pipeline,
and the supervisor's rollout check moving waves forward, or halting on failures."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from sqlalchemy import select

from bankiot_core.batch import STATUS_ACCEPTED, STATUS_DONE, STATUS_FAILED
from cloud.db import Database, database
from cloud.fleet import rollouts
from cloud.fleet.control_models import Command
from cloud.fleet.models import Device
from cloud.fleet.rollout_models import Rollout
from cloud.ingest.pipeline import Ingest
from tests.cloud.fleet_actions import add_branches, add_devices, served_app
from tests.cloud.ingest_support import SimGateway
from tests.cloud.people_actions import add_operator, bearer, make_token, sign_in
from tests.cloud.release_actions import Releases, signed_bundle, upload_body
from tests.cloud.test_fleet_releases import put_files

ESP32 = ["gw-%d" % n for n in range(6)]


@pytest.fixture
def world(rel: Releases) -> dict[str, Any]:
    """Six ESP32 gateways on 1.4.0, one on 1.5.0 already, a Pico W; release 1.5.0 ready."""
    branches = add_branches(rel.app, "north", "south")
    ids = add_devices(
        rel.app,
        *(
            {
                "uid": uid,
                "branch_id": branches["north"],
                "model": "esp32",
                "status": "active",
                "firmware_version": "1.4.0",
            }
            for uid in ESP32
        ),
        {
            "uid": "gw-new",
            "branch_id": branches["north"],
            "model": "esp32",
            "status": "active",
            "firmware_version": "1.5.0",
        },
        {"uid": "gw-pico", "branch_id": branches["north"], "model": "picow", "status": "active"},
        {"uid": "gw-south", "branch_id": branches["south"], "model": "esp32", "status": "active"},
    )
    add_operator(rel.app, "ops", "operations")
    add_operator(rel.app, "maria", "branch_manager", ("north",))
    add_operator(rel.app, "sam", "branch_manager", ("south",))
    ops = bearer(make_token(sign_in(rel.app, "ops")))
    bundle = signed_bundle(rel, "b150", version="1.5.0")
    client = rel.app.test_client()
    release = client.post("/api/fleet/releases", json=upload_body(bundle), headers=ops).json
    assert release is not None
    assert put_files(rel, ops, release["id"], bundle)["status"] == "ready"
    gateways = {uid: SimGateway(uid) for uid in [*ESP32, "gw-new"]}
    keys = None
    for gateway in gateways.values():
        keys = gateway.keys(keys)
    assert keys is not None
    with rel.app.app_context():
        ingest = Ingest(database(), keys)
    return {
        "branches": branches,
        "ids": dict(zip([*ESP32, "gw-new", "gw-pico", "gw-south"], ids, strict=True)),
        "release": release["id"],
        "ops": ops,
        "maria": bearer(make_token(sign_in(rel.app, "maria"))),
        "sam": bearer(make_token(sign_in(rel.app, "sam"))),
        "gateways": gateways,
        "ingest": ingest,
        "client": client,
    }


def start(world: dict[str, Any], status: int = 201, **settings: Any) -> dict[str, Any]:
    body = {"release_id": world["release"], "branch": world["branches"]["north"], **settings}
    response = world["client"].post("/api/fleet/rollouts", json=body, headers=world["ops"])
    assert response.status_code == status, response.json
    return response.json


def db_of(world: dict[str, Any]) -> Database:
    return world["ingest"].database


def tick(world: dict[str, Any], minutes: float = 0) -> None:
    """One supervisor pass of the rollout check, ``minutes`` from now."""
    now = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes)
    with db_of(world).sessions() as db:
        rollouts.advance_all(db, now)
        db.commit()


def show(world: dict[str, Any], rollout_id: int, who: str = "ops") -> dict[str, Any]:
    response = world["client"].get("/api/fleet/rollouts/%d" % rollout_id, headers=world[who])
    assert response.status_code == 200, response.json
    return response.json


def updating(world: dict[str, Any], rollout: dict[str, Any]) -> dict[str, int]:
    """Device uid -> update command id, for the members updating now."""
    by_id = {v: k for k, v in world["ids"].items()}
    return {
        by_id[m["device_id"]]: m["command_id"]
        for m in show(world, rollout["id"])["members"]
        if m["state"] == "updating"
    }


def report(world: dict[str, Any], uid: str, command_id: int, status: int, runs: str) -> None:
    """The gateway reports its update (urgent) and what it runs (routine), over ingest."""
    gateway = world["gateways"][uid]
    gateway._queue(gateway.batcher.add_result(command_id, status, "", gateway.now_ms))
    gateway._queue(gateway.batcher.add_running(runs, None, gateway.now_ms))
    gateway.flush()
    for _seq, envelope in gateway.outbox():
        result = world["ingest"].handle(envelope, gateway.aad, "mqtt", uid)
        assert result.status == "accepted" and result.ack is not None
        gateway.receive(result.ack)


def test_a_healthy_rollout_goes_canary_first_then_completes(world) -> None:
    rollout = start(world, waves=[20, 100])
    members = {m["device_id"]: m for m in rollout["members"]}
    # Six on 1.4.0 and one on 1.5.0 (skipped); the Pico W and the other branch are out.
    assert sorted(members) == sorted(world["ids"][u] for u in [*ESP32, "gw-new"])
    assert members[world["ids"]["gw-new"]]["state"] == "skipped"
    # 7 members, 20%: ceil(1.4) = 2 in the canary (the skipped one may be among them).
    canary = updating(world, rollout)
    assert 1 <= len(canary) <= 2 and rollout["counts"]["waiting"] == 6 - len(canary)
    for uid, command_id in canary.items():
        report(world, uid, command_id, STATUS_ACCEPTED, "1.4.0")
    tick(world)
    assert updating(world, rollout) == canary  # still under way: the next wave waits
    for uid, command_id in canary.items():
        report(world, uid, command_id, STATUS_DONE, "1.5.0")
    tick(world)
    wave = updating(world, rollout)
    assert len(wave) == 6 - len(canary) and not set(wave) & set(canary)
    for uid, command_id in wave.items():
        report(world, uid, command_id, STATUS_DONE, "1.5.0")
    tick(world)
    done = show(world, rollout["id"])
    assert done["state"] == "completed" and done["finished_at"]
    assert done["counts"] == {"succeeded": 6, "skipped": 1}
    with db_of(world).sessions() as db:
        versions = db.scalars(select(Device.firmware_version).where(Device.uid.in_(ESP32)))
        assert set(versions) == {"1.5.0"}
        commands = db.scalars(select(Command).where(Command.name == "update")).all()
        assert len(commands) == 6
        assert {c.args["version"] for c in commands} == {"1.5.0"}


def test_a_failing_canary_halts_the_rollout_and_nothing_else_starts(world) -> None:
    rollout = start(world, waves=[20, 100], failure_percent=10)
    canary = updating(world, rollout)
    uid, command_id = next(iter(canary.items()))
    report(world, uid, command_id, STATUS_FAILED, "1.4.0")  # it rolled itself back
    tick(world)
    halted = show(world, rollout["id"])
    assert halted["state"] == "halted" and "failed (threshold 10%)" in halted["reason"]
    for other_uid, other_id in list(canary.items())[1:]:
        report(world, other_uid, other_id, STATUS_DONE, "1.5.0")
    tick(world, minutes=5)
    assert show(world, rollout["id"])["counts"].get("waiting") == 6 - len(canary)
    # The operator resumes: the failure is forgiven and the next wave starts.
    resumed = world["client"].post(
        "/api/fleet/rollouts/%d/resume" % rollout["id"], headers=world["ops"]
    )
    assert resumed.status_code == 200 and resumed.json["state"] == "running"
    tick(world)
    assert len(updating(world, rollout)) == 6 - len(canary)
    cancelled = world["client"].post(
        "/api/fleet/rollouts/%d/cancel" % rollout["id"], headers=world["ops"]
    )
    assert cancelled.json["state"] == "cancelled"
    again = world["client"].post(
        "/api/fleet/rollouts/%d/cancel" % rollout["id"], headers=world["ops"]
    )
    assert again.status_code == 409


def test_a_device_that_does_not_come_back_in_time_fails_its_update(world) -> None:
    rollout = start(world, waves=[20, 100], health_minutes=15)
    canary = updating(world, rollout)
    tick(world, minutes=14)
    assert show(world, rollout["id"])["state"] == "running"
    tick(world, minutes=16)
    after = show(world, rollout["id"])
    assert after["state"] == "halted"
    failed = [m for m in after["members"] if m["state"] == "failed"]
    assert len(failed) == len(canary)
    assert {m["detail"] for m in failed} == {"not back on 1.5.0 within 15 minutes"}


def test_starts_are_rate_limited(world) -> None:
    rollout = start(world, waves=[100], max_starts_per_minute=2)
    assert rollout["counts"] == {"updating": 2, "waiting": 4, "skipped": 1}
    tick(world)  # within the same minute: nothing more
    assert show(world, rollout["id"])["counts"]["updating"] == 2
    tick(world, minutes=1.1)
    assert show(world, rollout["id"])["counts"]["updating"] == 4


def test_who_may_start_and_see_rollouts(world) -> None:
    client = world["client"]
    body = {"release_id": world["release"], "branch": world["branches"]["north"]}
    assert client.post("/api/fleet/rollouts", json=body, headers=world["maria"]).status_code == 403
    rollout = start(world)
    assert show(world, rollout["id"], "maria")["id"] == rollout["id"]
    hidden = client.get("/api/fleet/rollouts/%d" % rollout["id"], headers=world["sam"])
    assert hidden.status_code == 404
    listed = client.get("/api/fleet/rollouts", headers=world["sam"]).json
    assert listed == {"rollouts": []}
    halt = client.post("/api/fleet/rollouts/%d/halt" % rollout["id"], headers=world["maria"])
    assert halt.status_code == 403


def test_refused_rollouts_start_nothing(world) -> None:
    start(world)
    # The same devices cannot be in two rollouts at once.
    busy = start(world, status=409)
    assert "in another rollout" in busy["message"]
    for settings, says in (
        ({"waves": [50, 90]}, "end at 100"),
        ({"release_id": 999}, "no such release"),
    ):
        refused = start(world, status=404 if "release_id" in settings else 422, **settings)
        assert says in refused["message"]
    with db_of(world).sessions() as db:
        assert len(db.scalars(select(Rollout)).all()) == 1


def test_the_rollout_commands(world, rel, tmp_path, capsys, monkeypatch) -> None:
    from provisioning.cli import main

    with served_app(rel.app) as url:
        monkeypatch.setenv("BANKIOT_URL", url)
        monkeypatch.setenv("BANKIOT_TOKEN", world["ops"]["Authorization"].split()[1])
        north = str(world["branches"]["north"])
        argv = ["fleet", "rollout", "start", "--release", str(world["release"])]
        assert main([*argv, "--branch", north, "--waves", "20,100", "--json"]) == 0
        started = json.loads(capsys.readouterr().out)
        assert started["state"] == "running" and started["settings"]["waves"] == [20, 100]
        assert main(["fleet", "rollout", "halt", str(started["id"])]) == 0
        assert capsys.readouterr().out.startswith(
            "rollout %d of esp32 1.5.0: halted" % started["id"]
        )
        assert main(["fleet", "rollout", "list", "--json"]) == 0
        assert [r["state"] for r in json.loads(capsys.readouterr().out)] == ["halted"]
        assert main(["fleet", "rollout", "show", str(started["id"])]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[1].split() == ["device", "wave", "state", "from", "detail"]
        assert len(lines) == 2 + 7
        assert main([*argv, "--branch", north, "--waves", "fifty"]) != 0
        assert "percentages" in capsys.readouterr().err
        assert main(["fleet", "rollout", "halt", str(started["id"])]) != 0
        err = capsys.readouterr().err
        assert "HTTP 409" in err and len(err.strip().splitlines()) == 1
