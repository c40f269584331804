"""``bankiot kiosk deploy``: prepare a Raspberry Pi as a branch kiosk, in one idempotent step.

1. Check everything that needs no network first: root (on the running system), the screen
   user and the gateway service's user in the target's ``/etc/passwd``, the unit templates,
   ``gateway.toml`` if one is there, and an identity if one is there (it must be a kiosk's
   in the branch asked for: a second deploy to another branch is refused).
2. Enroll (``edge.enroll``) into a private staging folder beside the data folder, unless
   the kiosk is enrolled already (then the claim is not used). The cloud's answer must be
   a kiosk in the branch asked for; otherwise the staged identity is deleted and nothing is
   installed (the claim is spent by then: the message says what the cloud made of it).
   Only a correct identity is renamed into place.
3. Write ``/etc/bankiot/gateway.toml`` (``deploy_plan``), the gateway's system unit and the
   screen's user unit, each only if its content differs (written to a temporary name and
   renamed, so a file is old or new, never half).
4. Enable the units that are not enabled (``systemd.Systemd``).
5. Check the beacons: the branch's beacons with a fixed address are part of the
   configuration the cloud gives its gateways (``cloud.fleet.beacons``); the report says
   how many the kiosk's configuration pairs.

Everything lands under ``root`` (``/`` on the kiosk; a folder for tests and image
builders). Running it again changes nothing and says so.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge import identity as files
from edge.enroll import enroll
from edge.errors import GatewayError
from edge.kiosk import deploy_plan as plan
from edge.kiosk.deploy_plan import DeployError, User
from edge.kiosk.systemd import Systemd
from edge.settings import DEFAULT_DATA_DIR

UNITS_DIR = Path(__file__).resolve().parents[2] / "deploy"
KIOSK_KIND = "kiosk"


@dataclass(frozen=True)
class Options:
    """What to deploy: the branch (id), the claim token (None: only if enrolled already),
    the cloud, the target's root, the screen user (None: the desktop's autologin user),
    the ``bankiot`` command's path on the kiosk, and optionally the device uid and the CA
    file for the cloud's TLS."""

    branch: int
    claim: str | None
    cloud_url: str | None
    root: Path = Path("/")
    user: str | None = None
    bankiot: str = "/opt/bankiot/bin/bankiot"
    uid: str | None = None
    cafile: Path | None = None
    units: Path = UNITS_DIR


@dataclass
class Report:
    """What a deploy did, one ``(thing, outcome)`` per step; ``changed`` if anything did."""

    steps: list[tuple[str, str]] = field(default_factory=list)
    changed: bool = False

    def add(self, thing: str, outcome: str, changed: bool) -> None:
        self.steps.append((thing, outcome))
        self.changed = self.changed or changed


def target(root: Path, path: Path) -> Path:
    """Where the target system's absolute ``path`` is under ``root``."""
    return root / path.relative_to(path.anchor)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise DeployError("cannot read %s: %s" % (path, exc.strerror or exc)) from None


def _user(options: Options) -> User:
    passwd = _read(target(options.root, Path("/etc/passwd"))) or ""
    name = options.user
    if name is None:
        conf = _read(target(options.root, Path("/etc/lightdm/lightdm.conf"))) or ""
        name = plan.autologin_user(conf)
        if name is None:
            raise DeployError(
                "no desktop user logs in automatically: give the screen's user with --user "
                "(raspi-config: System Options > Boot / Auto Login > Desktop Autologin)"
            )
    user = plan.find_user(passwd, name)
    if user is None:
        raise DeployError("there is no user %r on the kiosk for the screen: give --user" % name)
    if plan.find_user(passwd, plan.SERVICE_USER) is None:
        raise DeployError(
            "there is no user %r for the gateway service: sudo useradd%s --system --home %s "
            "--shell /usr/sbin/nologin %s"
            % (
                plan.SERVICE_USER,
                "" if options.root == Path("/") else " --root %s" % options.root,
                DEFAULT_DATA_DIR,
                plan.SERVICE_USER,
            )
        )
    return user


def _enrolled(data_dir: Path) -> dict[str, Any] | None:
    """The enrollment record of the identity in ``data_dir`` (None: not enrolled)."""
    folder = files.identity_folder(data_dir)
    if not folder.exists() and not folder.is_symlink():
        return None
    try:
        record = json.loads((folder / files.ENROLLMENT_FILE).read_bytes())
    except (OSError, ValueError):
        record = None
    if not isinstance(record, dict):
        raise DeployError(
            "%s holds an identity that cannot be read: see `bankiot gateway status`" % folder
        )
    return record


def _check_record(record: dict[str, Any], branch: int, where: str) -> None:
    """Refuse an identity that is not a kiosk's of ``branch``; ``where`` begins the line
    and ends with a verb ("... device 7 (uid) is|as a gateway in branch 2")."""
    kind, at = record.get("kind"), record.get("branch_id")
    if kind == KIOSK_KIND and at == branch:
        return
    who = "device %s (%s)" % (record.get("device_id"), record.get("uid"))
    if kind != KIOSK_KIND:
        raise DeployError(
            "%s a %s in branch %s, not a kiosk: ask for a claim of kind kiosk for branch %d"
            % (where % who, kind, at, branch)
        )
    raise DeployError(
        "%s a kiosk of branch %s, not of branch %d: a kiosk moves branch only by factory "
        "reset and a new claim" % (where % who, at, branch)
    )


def _enroll(options: Options, cloud_url: str, data_dir: Path, report: Report) -> None:
    """Enroll in a staging folder; put the identity in place only if it is right."""
    if not options.claim:
        raise DeployError("this kiosk is not enrolled yet: give --claim TOKEN")
    parent = data_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".bankiot-deploy-", dir=parent))
    try:
        done = enroll(cloud_url, options.claim, staging, uid=options.uid, cafile=options.cafile)
        record = _enrolled(staging)
        assert record is not None
        try:
            _check_record(record, options.branch, "the claim enrolled %s as")
        except DeployError as exc:
            raise DeployError(
                "%s; nothing was installed (the cloud has the device: have it revoked)"
                % exc.message
            ) from None
        files.private_folder(data_dir)
        os.rename(files.identity_folder(staging), files.identity_folder(data_dir))
    except GatewayError as exc:
        raise DeployError(exc.message) from None
    except OSError as exc:
        raise DeployError("cannot write under %s: %s" % (data_dir, exc.strerror or exc)) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    identity = done.identity
    report.add(
        "identity",
        "enrolled %s: device %d (kiosk) in branch %d"
        % (identity.uid, identity.device_id, identity.branch_id),
        True,
    )


def _write(path: Path, text: str, report: Report, name: str, owner: User | None = None) -> bool:
    """Write ``text`` to ``path`` unless it holds it already (mode 0644, renamed into
    place); whether it wrote."""
    if _read(path) == text:
        report.add(name, "unchanged", False)
        return False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=".%s." % path.name, dir=path.parent)
        try:
            with os.fdopen(fd, "w") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(temporary, 0o644)
            if owner is not None and os.geteuid() == 0:
                os.chown(temporary, owner.uid, owner.gid)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise DeployError("cannot write %s: %s" % (path, exc.strerror or exc)) from None
    report.add(name, "written", True)
    return True


def _template(options: Options, unit: str) -> str:
    text = _read(options.units / unit)
    if text is None:
        raise DeployError(
            "the unit template %s is not there: run from a bankiot checkout"
            % (options.units / unit)
        )
    return text


def _chromium(root: Path) -> str | None:
    for path in plan.CHROMIUMS:
        if target(root, Path(path)).exists():
            return path
    return None


def deploy(options: Options, systemd: Systemd, euid: int | None = None) -> Report:
    """Deploy a kiosk (module docstring); the report. Raises ``DeployError`` (one line)."""
    root = options.root
    if root == Path("/") and (os.geteuid() if euid is None else euid) != 0:
        raise DeployError("deploying a kiosk changes the system: run it as root (sudo)")
    report = Report()
    # 1. everything that needs no network
    user = _user(options)
    gateway_template = _template(options, plan.GATEWAY_UNIT)
    kiosk_template = _template(options, plan.KIOSK_UNIT)
    config_path = target(root, plan.CONFIG_PATH)
    existing = _read(config_path)
    cloud_url = options.cloud_url.rstrip("/") if options.cloud_url else None
    if existing is not None:
        config_text, cloud_url = plan.amended_config(existing, config_path, cloud_url)
    elif cloud_url is None:
        raise DeployError("no cloud URL: give --cloud URL")
    else:
        cafile = str(options.cafile) if options.cafile is not None else None
        config_text = plan.new_config(cloud_url, options.branch, cafile)
    settings = plan.settings_of(config_text, config_path)
    assert settings.kiosk is not None
    data_dir = target(root, DEFAULT_DATA_DIR)
    record = _enrolled(data_dir)
    if record is not None:
        _check_record(record, options.branch, "this kiosk is enrolled already: %s is")
    # 2. the identity
    if record is None:
        _enroll(options, cloud_url, data_dir, report)
        record = _enrolled(data_dir)
        assert record is not None
    else:
        report.add(
            "identity",
            "unchanged (%s: device %s in branch %s)"
            % (record.get("uid"), record.get("device_id"), record.get("branch_id")),
            False,
        )
    # 3. the files
    _write(config_path, config_text, report, str(plan.CONFIG_PATH))
    unit_path = target(root, plan.SYSTEM_UNITS / plan.GATEWAY_UNIT)
    gateway_text = plan.gateway_unit(gateway_template, options.bankiot)
    gateway_changed = _write(
        unit_path, gateway_text, report, str(plan.SYSTEM_UNITS / plan.GATEWAY_UNIT)
    )
    chromium = _chromium(root)
    user_units = user.home / plan.USER_UNITS
    kiosk_text = plan.kiosk_unit(kiosk_template, settings.kiosk.port, chromium or plan.CHROMIUMS[0])
    _write(
        target(root, user_units / plan.KIOSK_UNIT),
        kiosk_text,
        report,
        str(user_units / plan.KIOSK_UNIT),
        owner=user,
    )
    # 4. the units
    if gateway_changed:
        systemd.reload()
    for unit, scope in ((plan.GATEWAY_UNIT, None), (plan.KIOSK_UNIT, user)):
        name = unit if scope is None else "%s (user %s)" % (unit, scope.name)
        if systemd.is_enabled(unit, scope):
            report.add(name, "enabled already", False)
        else:
            systemd.enable(unit, scope)
            report.add(name, "enabled", True)
    # 5. the beacons
    config = record.get("config")
    paired = config.get("paired") if isinstance(config, dict) else None
    count = len(paired) if isinstance(paired, list) else 0
    report.add(
        "beacons",
        "%d address%s paired by the cloud's configuration" % (count, "" if count == 1 else "es")
        if count
        else "none in the cloud's configuration yet (bankiot fleet beacons add --address)",
        False,
    )
    if chromium is None:
        report.add("chromium", "not installed: sudo apt-get install chromium", False)
    return report
