"""ESP32 (ESP32-DevKitC / WROOM-32 without PSRAM): pins, LED, button, limits, flash.

Flash layout: MicroPython's OTA partition table (``partitions-ota.csv``: ``ota_0``,
``ota_1`` and a littlefs ``vfs``), so that a firmware image can be written to the idle
slot with ``esp32.Partition`` and kept with ``mark_app_valid_cancel_rollback()`` only
after it reports healthy. The application and its data live on littlefs (``FOLDERS``).

WiFi and BLE share the one 2.4 GHz radio: the scan window stays at most half the interval
(``MAX_SCAN_DUTY_PERCENT``) so the station keeps its beacons and the TLS session alive.
"""

NAME = "esp32"
LED_PIN = 2  # the blue LED of the DevKitC, active high
LED_ACTIVE_HIGH = True
BUTTON_PIN = 0  # BOOT, active low with the internal pull-up
BUTTON_ACTIVE_LOW = True
WDT_MAX_MS = 60000  # the task watchdog takes far more; a minute is what we allow ourselves
WDT_TIMEOUT_MS = 20000
LINK_TIMEOUT_MS = 8000  # socket connect, TLS handshake, CONNACK: well under the watchdog
UART_ID = 1
UART_TX = 17
UART_RX = 16
UART_BAUD = 115200
MAX_SCAN_DUTY_PERCENT = 50
SHARED_RADIO = True
OTA = True
FOLDERS = ("/identity", "/config", "/data")
RAM_BUDGET = 48 * 1024  # steady-state heap the application may hold (about 110 KB free)
