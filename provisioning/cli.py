"""The ``bankiot`` command: one entry point, subcommands grouped by role.

Each role's group lives with its layer and is imported only when used, so a Raspberry Pi
gateway (no Flask) and the cloud (no bleak) both run ``bankiot`` without the other's
dependencies. A group whose extra is not installed says which one to install.

Only commands that work are listed here; each issue that adds a command adds its row.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping
from typing import Any

import click

import bankiot_core

# name -> (module, attribute, extra that provides its dependencies, one-line help)
COMMAND_GROUPS: dict[str, tuple[str, str, str, str]] = {
    "adv": ("provisioning.adv_cli", "adv", "field", "Decode BLE advertisements."),
    "analytics": (
        "cloud.analytics.cli",
        "analytics",
        "cloud",
        "Customer profiles, segments and life events: recompute.",
    ),
    "bank": ("cloud.bank.cli", "bank", "cloud", "Import bank statements (camt, MT940, ...)."),
    "cloud": ("cloud.cli", "cloud", "cloud", "Run and administer the cloud."),
    "events": ("cloud.events.cli", "events", "cloud", "Event rules: check, dry-run, run."),
    "firmware": ("provisioning.firmware_cli", "firmware", "field", "Build the board firmware."),
    "fleet": ("cloud.fleet.cli", "fleet", "cloud", "Fleet inventory for operators (API client)."),
    "flash": ("provisioning.flash_cli", "flash", "field", "Flash and enroll an ESP32 or Pico W."),
    "gateway": ("edge.cli", "gateway", "gateway", "Enroll and inspect a Raspberry Pi gateway."),
    "kiosk": ("provisioning.kiosk_cli", "kiosk", "gateway", "Deploy a branch kiosk (a Pi)."),
    "notifications": (
        "cloud.notifications.cli",
        "notifications",
        "cloud",
        "Push notifications: retry those given up.",
    ),
    "offers": ("cloud.offers.cli", "offers", "cloud", "Campaigns and offers: create, target."),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use.

    ``lazy``: name -> (module, attribute, extra, one-line help), like ``COMMAND_GROUPS``;
    other groups (``bankiot fleet``) use it for subcommands that live in their own modules.
    """

    def __init__(
        self, *args: Any, lazy: Mapping[str, tuple[str, str, str, str]] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(COMMAND_GROUPS if lazy is None else lazy)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.lazy:
            return super().get_command(ctx, cmd_name)
        module_name, attribute, extra, _ = self.lazy[cmd_name]
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            raise click.ClickException(
                "`bankiot %s` needs the %s extra (missing module %s): "
                "pip install 'bankiot[%s]'" % (cmd_name, extra, exc.name, extra)
            ) from exc
        command = getattr(module, attribute)
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List the subcommands; one whose extra is missing shows its one-line help and
        the extra it needs, so ``--help`` works on an install with one role's extra."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max((len(name) for name in names), default=0)
        rows = []
        for name in names:
            try:
                command = self.get_command(ctx, name)
            except click.ClickException:
                _, _, extra, summary = self.lazy[name]
                rows.append((name, "%s (needs the %s extra)" % (summary, extra)))
                continue
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(bankiot_core.VERSION, prog_name="bankiot")
def cli() -> None:
    """bankiot: BLE gateways, sealed end-to-end delivery and a cloud for banks."""


def main(argv: list[str] | None = None) -> int:
    """Run ``bankiot`` with ``argv`` (default: the command line); return the exit code.

    Every error, a wrong flag included, is one line on stderr: ``Error: ...``.
    """
    try:
        cli.main(args=argv, prog_name="bankiot", standalone_mode=False)
    except click.UsageError as exc:
        hint = " (see: %s --help)" % exc.ctx.command_path if exc.ctx else ""
        click.echo("Error: %s%s" % (exc.format_message(), hint), err=True)
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.Abort:
        click.echo("Aborted!", err=True)
        return 1
    return 0


def entry_point() -> None:
    """The ``bankiot`` console script."""
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
