"""``bankiot kiosk deploy``: prepare a Raspberry Pi as a branch kiosk (``edge.kiosk.deploy``).

Every refusal is one line and a non-zero exit status; the report is one line per step, and
a run that changed nothing ends with "unchanged".
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from edge.kiosk.deploy import Options, deploy
from edge.kiosk.deploy_plan import DeployError
from edge.kiosk.systemd import Systemctl


def _default_bankiot() -> str:
    """The ``bankiot`` command beside the Python that runs this one."""
    return str(Path(sys.executable).parent / "bankiot")


@click.group()
def kiosk() -> None:
    """The branch kiosk: a Raspberry Pi gateway with a touch screen."""


@kiosk.command("deploy")
@click.option("--branch", required=True, type=click.IntRange(1), help="The branch (id).")
@click.option(
    "--claim",
    metavar="TOKEN",
    envvar="BANKIOT_CLAIM",
    help="A claim token of kind kiosk for the branch ('-': read it from stdin; or "
    "$BANKIOT_CLAIM). Not needed once the kiosk is enrolled.",
)
@click.option("--cloud", "cloud_url", metavar="URL", help="The cloud (default: gateway.toml's).")
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("/"),
    show_default=True,
    help="Install under this folder (tests, image builders).",
)
@click.option("--user", help="The screen's desktop user (default: the autologin user).")
@click.option(
    "--bankiot",
    "bankiot_path",
    metavar="PATH",
    help="The bankiot command on the kiosk (default: the one beside this Python).",
)
@click.option("--uid", help="The device uid (default: rpi- and 12 hex digits from the machine id).")
@click.option("--cafile", type=click.Path(path_type=Path), help="CA to trust for the cloud's TLS.")
def deploy_command(
    branch: int,
    claim: str | None,
    cloud_url: str | None,
    root: Path,
    user: str | None,
    bankiot_path: str | None,
    uid: str | None,
    cafile: Path | None,
) -> None:
    """Enroll this Raspberry Pi as a kiosk of branch BRANCH, write gateway.toml, install
    and enable the gateway's and the screen's systemd units. Running it again changes
    nothing."""
    token = sys.stdin.readline().strip() if claim == "-" else claim
    options = Options(
        branch=branch,
        claim=token,
        cloud_url=cloud_url,
        root=root.absolute(),
        user=user,
        bankiot=bankiot_path or _default_bankiot(),
        uid=uid,
        cafile=cafile,
    )
    try:
        report = deploy(options, Systemctl(options.root))
    except DeployError as exc:
        raise click.ClickException(exc.message) from None
    width = max(len(thing) for thing, _ in report.steps)
    for thing, outcome in report.steps:
        click.echo("%s  %s" % (thing.ljust(width), outcome))
    click.echo(
        "kiosk of branch %d: %s"
        % (
            branch,
            "deployed (the screen starts at the next login or reboot)"
            if report.changed
            else "unchanged",
        )
    )
