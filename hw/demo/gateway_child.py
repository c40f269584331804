"""A Raspberry Pi gateway of the demo: ``bankiot gateway run`` with a virtual BLE adapter.

Run as a child process: ``python -m hw.demo.gateway_child --config gateway.toml --branch 1``.
It runs exactly what ``bankiot gateway run`` runs (``provisioning.cli.main``), with one
change: the gateway's BLE source scans ``hw.bleak_radio``'s virtual adapter instead of
BlueZ, and a feeder on the gateway's own event loop advertises the branch's simulated
devices (``hw.demo.devices``) into it once a second. Everything after bleak's scanner
(decoding, filters, presence, the kiosk, sealing, the queue, the uplinks) is the real code.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from typing import Any

from edge import ble_source
from hw.bleak_radio import VirtualBleakRadio
from hw.demo.devices import branch_air, frames

TICK_S = 1.0


async def feed(radio: VirtualBleakRadio, branch: int, stop: asyncio.Event) -> None:
    """Advertise ``branch``'s devices into ``radio`` every ``TICK_S`` until ``stop``."""
    air = branch_air(branch)
    started = time.monotonic()
    while not stop.is_set():
        t_ms = int((time.monotonic() - started) * 1000)
        for address, payload, rssi in frames(air, t_ms):
            radio.advertise(address, payload, rssi)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=TICK_S)


def with_virtual_adapter(branch: int) -> None:
    """Make the gateway's ``BleSource`` scan a virtual adapter fed with ``branch``'s air."""
    radio = VirtualBleakRadio()
    real = ble_source.BleSource

    class DemoBleSource(real):  # type: ignore[misc, valid-type]
        def __init__(self, adapter: Any, on_heard: Any, **options: Any) -> None:
            options.setdefault("backend", radio.backend)
            super().__init__(adapter, on_heard, **options)

        async def run(self, stop: asyncio.Event) -> None:
            feeder = asyncio.ensure_future(feed(radio, branch, stop))
            try:
                await super().run(stop)
            finally:
                feeder.cancel()

    ble_source.BleSource = DemoBleSource  # type: ignore[misc]


def main(argv: list[str] | None = None) -> int:
    """Run the gateway of ``--config`` hearing ``--branch``'s simulated devices."""
    parser = argparse.ArgumentParser(description="A demo gateway with a virtual BLE adapter.")
    parser.add_argument("--config", required=True)
    parser.add_argument("--branch", type=int, required=True, choices=(1, 2))
    args = parser.parse_args(argv)
    with_virtual_adapter(args.branch)
    from provisioning.cli import main as cli

    return cli(["gateway", "run", "--config", args.config])


if __name__ == "__main__":
    raise SystemExit(main())
