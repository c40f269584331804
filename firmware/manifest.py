# ruff: noqa: F821
# (include, require, package: globals that MicroPython's manifest evaluator provides)
"""The frozen-image manifest: the gateway's code built into a MicroPython image.

Loaded from ``.mpy`` files, the core and the application take 150 to 230 KB of heap for
their bytecode, more than an ESP32 without PSRAM has free (about 110 KB). Frozen into the
image the bytecode stays in flash. Build it from a MicroPython checkout (docs/firmware.md,
"A frozen image")::

    cd micropython/ports/esp32
    make BOARD=ESP32_GENERIC FROZEN_MANIFEST=$BANKIOT/firmware/manifest.py
    cd micropython/ports/rp2
    make BOARD=RPI_PICO_W FROZEN_MANIFEST=$BANKIOT/firmware/manifest.py

MicroPython's manifest format (``tools/manifestfile.py``): paths relative to this file,
``$(PORT_DIR)`` and friends substituted. This file is a build input, never a device file
(``provisioning.firmware_bundle.BUILD_ONLY``). ``boot.py`` and ``main.py`` stay files on
the board's flash (MicroPython runs them from there), as do ``/identity`` and ``/config``.
"""

# What the port's own image holds (asyncio, the port's modules): a custom manifest
# replaces the default one, so it includes it.
include("$(PORT_DIR)/boards/manifest.py")

# From micropython-lib, what the firmware imports: ntptime (the clock before TLS) and ssl
# (MQTT over TLS, https downloads). The ESP32's default manifest has them already, the
# Pico W's board manifest does too; asking twice adds nothing.
require("ntptime")
require("ssl")

# The portable core, imported as bankiot_core (on a board's flash it sits in /lib).
package("bankiot_core", base_path="lib")

# The application, and the board support package: both boards' modules (a few hundred
# bytes of flash each), app.board.current() picks the running one by sys.platform, so one
# manifest serves both ports.
package("app")
package("boards")
