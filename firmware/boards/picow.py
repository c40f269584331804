"""Raspberry Pi Pico W (RP2040 + CYW43439): pins, LED, button, limits, flash.

The RP2040 watchdog counts at most 8388 ms (a 24-bit counter at 2 ticks per microsecond):
``machine.WDT`` refuses more, so the timeout, and every blocking step of the application
(socket connect, TLS handshake), stays under it. The LED is on the wireless chip
(``Pin("LED")``); the only button is BOOTSEL (``rp2.bootsel_button()``), which the
application reads at boot to force safe mode.

Flash layout: 2 MB, of which MicroPython's littlefs takes 848 KB; no OTA slots, so updates
replace application files (checked against the signed manifest) and never the firmware
image. rp2 reformats the flash if littlefs fails to mount: provisioning must run again then.
"""

NAME = "picow"
LED_PIN = "LED"
LED_ACTIVE_HIGH = True
BUTTON_PIN = None  # BOOTSEL, read with rp2.bootsel_button()
BUTTON_ACTIVE_LOW = False
WDT_MAX_MS = 8388
WDT_TIMEOUT_MS = 8000
LINK_TIMEOUT_MS = 5000
UART_ID = 0
UART_TX = 0
UART_RX = 1
UART_BAUD = 115200
MAX_SCAN_DUTY_PERCENT = 50  # the CYW43439 also shares its radio between WiFi and BLE
SHARED_RADIO = True
OTA = False
FOLDERS = ("/identity", "/config", "/data")
RAM_BUDGET = 48 * 1024
