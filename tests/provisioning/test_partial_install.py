"""``bankiot`` installed with one role's extra, as the guides install it: ``--help`` still
lists every command, a plain (not editable) install says it has no firmware tree instead of
compiling nothing, and the fleet commands load without pyserial."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from provisioning.cli import LazyGroup
from provisioning.firmware_bundle import BundleError, device_files


def test_help_lists_a_command_whose_extra_is_missing() -> None:
    lazy = {
        "here": ("provisioning.adv_cli", "adv", "field", "Decode."),
        "gone": ("no_such_module_for_bankiot", "x", "cloud", "Run the cloud."),
    }
    group = LazyGroup(name="bankiot", lazy=lazy)
    result = CliRunner().invoke(group, ["--help"])
    assert result.exit_code == 0, result.output
    assert "gone  Run the cloud. (needs the cloud extra)" in result.output
    assert "here  Decode BLE advertisements" in result.output
    # Running it still says which extra to install, in one line.
    result = CliRunner().invoke(group, ["gone"])
    assert result.exit_code == 1
    assert "pip install 'bankiot[cloud]'" in result.output


def test_no_firmware_tree_is_an_error_not_an_empty_build(tmp_path: Path) -> None:
    missing = tmp_path / "site-packages" / "firmware"
    with pytest.raises(BundleError) as caught:
        device_files(missing)
    assert str(caught.value).startswith("no firmware tree at %s: " % missing)
    assert "install bankiot from a checkout" in str(caught.value)


def test_fleet_replace_and_decommission_load_without_pyserial() -> None:
    # A cloud-only install has no pyserial; only `decommission --port` needs it, when used.
    code = (
        "import sys; sys.modules['serial'] = None\n"
        "import cloud.fleet.replacement_cli as m\n"
        "print(m.replace.name, m.decommission.name)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["replace", "decommission"]
