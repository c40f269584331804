"""The board application: what an ESP32 or Pico W gateway runs on top of the portable core.

One job per module; the logic is in plain classes fed with the time and bytes, the I/O
(radio, sockets, flash, pins) at the edges, so the tests run every module in the real
MicroPython VM with stand-ins for the radios only:

=============  ==============================================================================
``config``     identity and configuration from the files provisioning wrote (no defaults)
``ring``       the bounded ring the BLE IRQ copies advertisements into
``scanner``    the ``bluetooth`` observer: IRQ handler, scan interval and window
``store``      small files written atomically (temp file, then rename) on littlefs
``crashloop``  boots without a healthy run, counted on flash; safe mode past a limit
``watchdog``   ``machine.WDT`` fed only while every task of the main loop checks in
``health``     free heap, uptime, reset cause, WiFi RSSI (queue depth comes from the engine)
``wifi``       station connect with jittered backoff
``mqttlink``   one MQTT connection (core ``mqtt``) over a socket, TLS verified
``uplinks``    stay connected: backoff, reconnect, resend, fall back between links
``gateway``    the engine (core ``gateway``) wired to all of the above
``wallclock``  the clock by NTP before TLS, with back-off; Unix times for the batches
``updates``    the ``update`` command: download, check, switch, trial (``update_plan``: its
               decisions, pure; ``releases``: folders and the pointer ``boot.py`` reads;
               ``httpget``: GET in pieces; ``ed25519``/``sha512``: the signature check;
               ``release_mac``: the per-device MAC; ``ota``: ESP32 images)
``radiomode``  the other role: advertisements framed onto the UART for a Raspberry Pi
``main``       boot decisions (not provisioned, safe mode, gateway or radio) and the loop
=============  ==============================================================================
"""
