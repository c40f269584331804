"""``bankiot kiosk deploy`` against the real cloud app on a real HTTP server, into a folder
given as ``--root``.

The cloud runs on SQLite only (its data layer is tested on both databases in tests/cloud).
systemd is the one stand-in: a recorder of what the deploy asks for, except in the CLI test,
which runs the machine's real ``systemctl --root`` on the folder.
"""

from __future__ import annotations

import json
import shutil
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from edge import identity as files
from edge.kiosk import deploy_plan as plan
from edge.kiosk.deploy import Options, deploy
from edge.kiosk.deploy_plan import DeployError, User
from edge.settings import parse_settings
from provisioning.cli import main
from tests.cloud.fleet_actions import served_app
from tests.cloud.identity_actions import Cloud, body, create_claim, running_cloud
from tests.support.environment import unavailable

BEACON_ADDRESS = "C3:00:00:0A:1B:2C"
PASSWD = (
    "root:x:0:0:root:/root:/bin/bash\n"
    "bankiot:x:998:998::/var/lib/bankiot:/usr/sbin/nologin\n"
    "screen:x:1000:1000:Kiosk screen:/home/screen:/bin/bash\n"
)


@dataclass
class RecordingSystemd:
    """A ``Systemd`` that records what it is asked to change, and remembers it."""

    enabled: set[tuple[str, str | None]] = field(default_factory=set)
    calls: list[tuple[str, ...]] = field(default_factory=list)

    def is_enabled(self, unit: str, user: User | None) -> bool:
        return (unit, user.name if user else None) in self.enabled

    def enable(self, unit: str, user: User | None) -> None:
        self.calls.append(("enable", unit, user.name if user else "system"))
        self.enabled.add((unit, user.name if user else None))

    def reload(self) -> None:
        self.calls.append(("daemon-reload",))


@dataclass
class Served:
    cloud: Cloud
    url: str


@pytest.fixture
def served(migrated_sqlite_url: URL, tmp_path: Path) -> Iterator[Served]:
    """A cloud with a fleet CA and branches north and south, on a free local port."""
    with (
        running_cloud(migrated_sqlite_url, tmp_path / "cloud") as cloud,
        served_app(cloud.app) as url,
    ):
        yield Served(cloud, url)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A kiosk's file system: the screen user and the gateway service's user exist."""
    root = tmp_path / "kiosk"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text(PASSWD)
    (root / "home/screen").mkdir(parents=True)
    return root


def options(served: Served, root: Path, branch: str, claim: str | None, **more) -> Options:
    given = {
        "cloud_url": served.url,
        "user": "screen",
        "bankiot": "/opt/kiosk/bin/bankiot",
        "uid": "kiosk-north-1",
        **more,
    }
    return Options(branch=served.cloud.branches[branch], claim=claim, root=root, **given)


def add_beacon(served: Served, branch: str, address: str | None = BEACON_ADDRESS) -> dict:
    json_body = {
        "kind": "ibeacon",
        "branch": served.cloud.branches[branch],
        "uuid": "f7826da6-4fa2-4e98-8024-bc5b71e0893e",
        "major": 7,
        "minor": 1,
        "label": "entrance",
    }
    if address:
        json_body["address"] = address
    response = served.cloud.client.post("/api/fleet/beacons", json=json_body)
    assert response.status_code == 201, response.json
    return body(response)


def installed(root: Path) -> dict[str, float]:
    """Every file and link under ``root`` (the passwd aside) with its modification time."""
    return {
        str(path.relative_to(root)): path.lstat().st_mtime_ns
        for path in sorted(root.rglob("*"))
        if (path.is_file() or path.is_symlink()) and path.name != "passwd"
    }


def test_deploy_enrolls_writes_and_enables_once_then_changes_nothing(
    served: Served, root: Path
) -> None:
    add_beacon(served, "north")
    claim = create_claim(served.cloud, "north", kind="kiosk")
    systemd = RecordingSystemd()

    report = deploy(options(served, root, "north", claim), systemd)

    assert report.changed
    record = json.loads((root / "var/lib/bankiot/identity/enrollment.json").read_text())
    assert (record["kind"], record["branch_id"], record["uid"]) == (
        "kiosk",
        served.cloud.branches["north"],
        "kiosk-north-1",
    )
    # The branch's beacon came with the configuration the cloud gave at enrollment.
    assert record["config"]["paired"] == [BEACON_ADDRESS]
    assert ("beacons", "1 address paired by the cloud's configuration") in report.steps
    config = root / "etc/bankiot/gateway.toml"
    settings = parse_settings(tomllib.loads(config.read_text()), config)
    assert settings.cloud_url == served.url
    assert settings.kiosk is not None and settings.kiosk.port == 8080
    gateway_unit = (root / "etc/systemd/system/bankiot-gateway.service").read_text()
    assert "exec /opt/kiosk/bin/bankiot gateway run" in gateway_unit
    assert "ExecStartPre=-/opt/kiosk/bin/bankiot gateway check-release" in gateway_unit
    assert "/opt/bankiot/bin/bankiot" not in gateway_unit
    kiosk_unit = (root / "home/screen/.config/systemd/user/bankiot-kiosk.service").read_text()
    assert "Environment=KIOSK_PORT=8080" in kiosk_unit
    assert systemd.calls == [
        ("daemon-reload",),
        ("enable", "bankiot-gateway.service", "system"),
        ("enable", "bankiot-kiosk.service", "screen"),
    ]
    # No staging folder is left beside the data folder.
    assert sorted(p.name for p in (root / "var/lib").iterdir()) == ["bankiot"]

    before, calls = installed(root), list(systemd.calls)
    again = deploy(options(served, root, "north", claim), systemd)  # the claim is used: not sent

    assert not again.changed
    assert installed(root) == before
    assert systemd.calls == calls
    assert [outcome for _, outcome in again.steps[1:4]] == ["unchanged"] * 3
    assert again.steps[0][1].startswith("unchanged (kiosk-north-1")


def test_a_second_deploy_to_another_branch_is_refused(served: Served, root: Path) -> None:
    claim = create_claim(served.cloud, "north", kind="kiosk")
    deploy(options(served, root, "north", claim), RecordingSystemd())
    before = installed(root)
    systemd = RecordingSystemd()

    with pytest.raises(DeployError) as refused:
        deploy(
            options(served, root, "south", create_claim(served.cloud, "south", "kiosk")), systemd
        )

    assert (
        "kiosk of branch %d, not of branch %d"
        % (
            served.cloud.branches["north"],
            served.cloud.branches["south"],
        )
        in refused.value.message
    )
    assert "\n" not in refused.value.message
    assert installed(root) == before and systemd.calls == []


@pytest.mark.parametrize(
    ("kind", "claimed_for", "says"),
    [("gateway", "north", "as a gateway in branch"), ("kiosk", "south", "as a kiosk of branch")],
)
def test_a_claim_of_another_kind_or_branch_installs_nothing(
    served: Served, root: Path, kind: str, claimed_for: str, says: str
) -> None:
    claim = create_claim(served.cloud, claimed_for, kind=kind)
    systemd = RecordingSystemd()

    with pytest.raises(DeployError) as refused:
        deploy(options(served, root, "north", claim), systemd)

    assert says in refused.value.message and "nothing was installed" in refused.value.message
    assert installed(root) == {} and systemd.calls == []
    assert not (root / "var/lib/bankiot" / files.IDENTITY_DIR).exists()


def test_wrong_claim_and_unreachable_cloud_are_one_line_and_write_nothing(
    served: Served, root: Path
) -> None:
    cases = [
        (options(served, root, "north", "bkc_" + "A" * 43), "claim token is not valid"),
        (
            Options(
                branch=1,
                claim="bkc_" + "A" * 43,
                cloud_url="http://127.0.0.1:9",
                root=root,
                user="screen",
                uid="kiosk-x",
            ),
            "cannot reach http://127.0.0.1:9",
        ),
        (options(served, root, "north", None), "give --claim TOKEN"),
    ]
    for given, says in cases:
        with pytest.raises(DeployError) as refused:
            deploy(given, RecordingSystemd())
        assert says in refused.value.message and "\n" not in refused.value.message
        assert installed(root) == {}


def test_refusals_before_any_network(served: Served, root: Path, tmp_path: Path) -> None:
    claim = create_claim(served.cloud, "north", kind="kiosk")
    no_service_user = tmp_path / "bare"
    (no_service_user / "etc").mkdir(parents=True)
    (no_service_user / "etc/passwd").write_text("screen:x:1000:1000::/home/screen:/bin/sh\n")
    cases = [
        (Options(branch=1, claim=claim, cloud_url=served.url), 1000, "run it as root"),
        (options(served, root, "north", claim, user=None), 0, "no desktop user logs in"),
        (options(served, no_service_user, "north", claim), 0, "useradd --root"),
        (options(served, root, "north", claim, units=tmp_path), 0, "is not there"),
    ]
    for given, euid, says in cases:
        with pytest.raises(DeployError) as refused:
            deploy(given, RecordingSystemd(), euid=euid)
        assert says in refused.value.message, refused.value.message
    # The claim was never spent: it still enrolls.
    assert deploy(options(served, root, "north", claim), RecordingSystemd()).changed


def test_an_existing_gateway_toml_is_kept_and_only_completed(served: Served, root: Path) -> None:
    config = root / "etc/bankiot/gateway.toml"
    config.parent.mkdir(parents=True)
    mine = '# the technician\'s notes stay\n[sources]\nble = ["hci1"]\n'
    config.write_text(mine)
    (root / "etc/lightdm").mkdir()
    (root / "etc/lightdm/lightdm.conf").write_text(
        "[Seat:*]\n#autologin-user=pi\nautologin-user=screen\n"
    )
    claim = create_claim(served.cloud, "north", kind="kiosk")

    deploy(options(served, root, "north", claim, user=None), RecordingSystemd())

    text = config.read_text()
    assert text.startswith(mine)
    settings = parse_settings(tomllib.loads(text), config)
    assert settings.ble[0].adapter == "hci1" and settings.cloud_url == served.url
    assert settings.kiosk is not None
    assert (root / "home/screen/.config/systemd/user/bankiot-kiosk.service").exists()

    with pytest.raises(DeployError) as refused:
        deploy(
            options(served, root, "north", None, cloud_url="https://other.bank.example"),
            RecordingSystemd(),
        )
    assert "not https://other.bank.example" in refused.value.message


def test_the_command_with_the_real_systemctl(
    served: Served, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if shutil.which("systemctl") is None:
        unavailable("systemctl is not installed")
    claim = create_claim(served.cloud, "north", kind="kiosk")
    argv = [
        "kiosk",
        "deploy",
        "--branch",
        str(served.cloud.branches["north"]),
        "--claim",
        claim,
        "--cloud",
        served.url,
        "--root",
        str(root),
        "--user",
        "screen",
        "--uid",
        "kiosk-north-2",
    ]

    assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert out.splitlines()[-1].startswith(
        "kiosk of branch %d: deployed" % served.cloud.branches["north"]
    )
    wants = root / "etc/systemd/system/multi-user.target.wants/bankiot-gateway.service"
    assert wants.is_symlink()
    assert str(wants.readlink()) == "/etc/systemd/system/bankiot-gateway.service"
    link = (
        root
        / "home/screen/.config/systemd/user/graphical-session.target.wants/bankiot-kiosk.service"
    )
    assert str(link.readlink()) == "/home/screen/.config/systemd/user/bankiot-kiosk.service"

    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == "kiosk of branch %d: unchanged" % served.cloud.branches["north"]
    assert "enabled already" in out

    assert main([*argv[:3], str(served.cloud.branches["south"]), *argv[4:]]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: this kiosk is enrolled already") and err.count("\n") == 1


def test_plan_reads_passwd_and_lightdm() -> None:
    assert plan.find_user(PASSWD, "screen") == User("screen", 1000, 1000, Path("/home/screen"))
    assert plan.find_user(PASSWD, "nobody") is None
    assert plan.autologin_user("[Seat:*]\n#autologin-user=pi\nautologin-user=kiosk\n") == "kiosk"
    assert plan.autologin_user("[Seat:*]\n# autologin-user=pi\n") is None
