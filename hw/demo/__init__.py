"""``make demo``: a bank's branch network on one machine.

``python -m hw.demo`` starts ``bankiot cloud up`` (SQLite, its own Mosquitto, CoAP) in a
data folder (``.demo``), provisions a demo bank through the same APIs a deployment uses,
enrolls and runs a Raspberry Pi kiosk gateway per branch (a virtual BLE adapter fed by the
simulated devices of ``hw.demo.devices``), flashes a blank virtual ESP32 with ``bankiot
flash``, signs customers up and pairs their wearables with kiosk codes, pushes their bank
statements (camt.053 from the synthetic population) as the core-banking system would, lets
a shopper into the partner café whose beacon the ESP32 hears, and then prints a line for
each notable event while customers check in, offers go out, profiles and life events are
found, the shopping app decides, a cabinet overheats and a gateway is unplugged. Modules:
``run`` (the shell and the command line), ``bank``, ``customers``, ``devices``, ``esp32``,
``gateway_child``, ``statements``, ``watch``, ``web``.
"""
