"""What ``bankiot kiosk deploy`` writes, decided without touching the disk (``edge.kiosk.deploy``
does the I/O): the ``gateway.toml`` text, the two systemd units with their paths filled in,
and who the kiosk's screen user is.

``gateway.toml``: a new file gets ``data_dir``, ``[cloud] url`` and a ``[kiosk]`` table with
its defaults. An existing file is kept as it is (comments and all) and only what is missing
is appended: a ``[cloud]`` table with the URL, a ``[kiosk]`` table. A URL in the file that
is not the one asked for, or a ``data_dir`` other than the units' ``/var/lib/bankiot``
(their ``StateDirectory``), is refused: the deploy does not guess which one is meant.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from edge.errors import GatewayError
from edge.settings import DEFAULT_DATA_DIR, GatewaySettings, KioskSettings, parse_settings

CONFIG_PATH = Path("/etc/bankiot/gateway.toml")
GATEWAY_UNIT = "bankiot-gateway.service"
KIOSK_UNIT = "bankiot-kiosk.service"
SYSTEM_UNITS = Path("/etc/systemd/system")
USER_UNITS = Path(".config/systemd/user")  # under the screen user's home
TEMPLATE_BANKIOT = "/opt/bankiot/bin/bankiot"
TEMPLATE_CONFIG = "/etc/bankiot/gateway.toml"
TEMPLATE_CHROMIUM = "/usr/bin/chromium"
TEMPLATE_PORT = "Environment=KIOSK_PORT=8080"
CHROMIUMS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
SERVICE_USER = "bankiot"  # the gateway unit's User=
_AUTOLOGIN = re.compile(r"^[ \t]*autologin-user[ \t]*=[ \t]*([^\s#]+)", re.MULTILINE)


class DeployError(GatewayError):
    """``bankiot kiosk deploy`` refuses, or could not finish; the message says which."""


@dataclass(frozen=True)
class User:
    """A user of the target system (from its ``/etc/passwd``)."""

    name: str
    uid: int
    gid: int
    home: Path


def find_user(passwd: str, name: str) -> User | None:
    """The entry of ``name`` in the text of an ``/etc/passwd``, or None."""
    for line in passwd.splitlines():
        fields = line.split(":")
        if len(fields) >= 7 and fields[0] == name:
            try:
                return User(name, int(fields[2]), int(fields[3]), Path(fields[5]))
            except ValueError:
                return None
    return None


def autologin_user(lightdm_conf: str) -> str | None:
    """The user the desktop logs in automatically (``autologin-user=`` in LightDM's
    configuration, which raspi-config's "Desktop Autologin" sets), or None."""
    found = _AUTOLOGIN.findall(lightdm_conf)
    return found[-1] if found else None


# ---- gateway.toml ------------------------------------------------------------------------------


def _quoted(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(text)


def _kiosk_table() -> str:
    defaults = KioskSettings()
    return (
        '\n[kiosk]                            # the screen (docs/gateway.md, "Kiosk")\n'
        'listen = "%s:%d"\n' % (defaults.host, defaults.port)
    )


def new_config(cloud_url: str, branch: int, cafile: str | None) -> str:
    """The ``gateway.toml`` of a kiosk deployed from scratch."""
    lines = [
        "# Written by `bankiot kiosk deploy` for branch %d (docs/branches.md). Edit freely:"
        % branch,
        "# a later deploy keeps this file and only adds what is missing.",
        "data_dir = %s" % _quoted(str(DEFAULT_DATA_DIR)),
        "",
        "[cloud]",
        "url = %s" % _quoted(cloud_url),
    ]
    if cafile:
        lines.append("cafile = %s" % _quoted(cafile))
    return "\n".join(lines) + "\n" + _kiosk_table()


def amended_config(text: str, path: Path, cloud_url: str | None) -> tuple[str, str]:
    """``text`` (the existing ``gateway.toml`` at ``path``) with what a kiosk needs
    appended, and the cloud URL it names; DeployError when it cannot serve as one."""
    data, settings = _parse(text, path)
    if settings.data_dir != DEFAULT_DATA_DIR:
        raise DeployError(
            "%s: data_dir is %s; a kiosk deploy uses %s (the units' StateDirectory)"
            % (path, settings.data_dir, DEFAULT_DATA_DIR)
        )
    out = text if text.endswith("\n") or not text else text + "\n"
    if settings.cloud_url is None:
        if cloud_url is None:
            raise DeployError("no cloud URL: give --cloud URL (or set [cloud] url in %s)" % path)
        if "cloud" in data:
            raise DeployError(
                "%s has a [cloud] table without url: add url = %r" % (path, cloud_url)
            )
        out += "\n[cloud]\nurl = %s\n" % _quoted(cloud_url)
    elif cloud_url is not None and settings.cloud_url != cloud_url.rstrip("/"):
        raise DeployError(
            "%s names the cloud %s, not %s: change it there, or leave --cloud out"
            % (path, settings.cloud_url, cloud_url)
        )
    if settings.kiosk is None:
        out += _kiosk_table()
    _, final = _parse(out, path)
    assert final.cloud_url is not None
    return out, final.cloud_url


def _parse(text: str, path: Path) -> tuple[dict, GatewaySettings]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DeployError("%s: not valid TOML: %s" % (path, exc)) from None
    try:
        return data, parse_settings(data, path)
    except GatewayError as exc:
        raise DeployError(exc.message) from None


def settings_of(text: str, path: Path) -> GatewaySettings:
    """The settings of a ``gateway.toml`` text (DeployError if it is not one)."""
    return _parse(text, path)[1]


# ---- the units ----------------------------------------------------------------------------------


def _replace(template: str, old: str, new: str, unit: str) -> str:
    if old not in template:
        raise DeployError("the %s template has no %r to fill in: is it bankiot's?" % (unit, old))
    return template.replace(old, new)


def gateway_unit(template: str, bankiot: str) -> str:
    """The gateway's system unit: ``bankiot`` is the command's path on the kiosk."""
    text = _replace(template, TEMPLATE_BANKIOT, bankiot, GATEWAY_UNIT)
    return _replace(
        text,
        "BANKIOT_GATEWAY_CONFIG=" + TEMPLATE_CONFIG,
        "BANKIOT_GATEWAY_CONFIG=%s" % CONFIG_PATH,
        GATEWAY_UNIT,
    )


def kiosk_unit(template: str, port: int, chromium: str) -> str:
    """The screen's user unit: Chromium at ``chromium`` showing the page on ``port``."""
    text = _replace(template, TEMPLATE_PORT, "Environment=KIOSK_PORT=%d" % port, KIOSK_UNIT)
    return _replace(text, "ExecStart=" + TEMPLATE_CHROMIUM, "ExecStart=" + chromium, KIOSK_UNIT)
