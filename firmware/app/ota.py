"""ESP32 firmware images through ``esp32.Partition``: write the idle OTA slot, check, switch.

With MicroPython's OTA partition table (``ota_0``, ``ota_1``; ``boards/esp32``), a new
firmware image (MicroPython with the application frozen in) goes into the partition that
does not run (``Partition(RUNNING).get_next_update()``) block by block (``writeblocks``
with whole 4 KB blocks: the simple form erases each block first); the last block is padded
with 0xFF, as erased flash reads. Before ``set_boot`` the image is read back from flash and
its SHA-256 compared with the manifest's: what boots is what was signed, whatever the
download or the flash did on the way.

After the switch the board resets into the new image on trial (``app.update_plan``, as
for application files). ESP-IDF's bootloader keeps an image that has not called
``mark_app_valid_cancel_rollback()`` on probation and goes back to the previous slot at
the next reset; ``confirm`` makes that call, and only once the new image's first
``running`` record has been acknowledged by the cloud. ``revert`` boots the previous slot
explicitly (a trial that failed while the image itself runs well enough to say so).
"""

import binascii
import hashlib

_IOCTL_BLOCK_COUNT = 4
_IOCTL_BLOCK_SIZE = 5


class ImageError(Exception):
    """The image cannot be written or did not read back as signed; one line."""


class ImageWriter:
    """One image written to the idle OTA slot of ``esp32`` (the module)."""

    def __init__(self, esp32):
        self.esp32 = esp32
        self.running = esp32.Partition(esp32.Partition.RUNNING)
        self.target = None
        self.written = 0
        self._buffer = None
        self._fill = 0
        self._block = 0

    def running_label(self):
        """The label of the partition running now (``ota_0``, ``ota_1``, ``factory``)."""
        return self.running.info()[4]

    def begin(self, size):
        """Pick the idle slot for an image of ``size`` bytes; ImageError if it cannot hold it."""
        target = self.running.get_next_update()
        block_size = target.ioctl(_IOCTL_BLOCK_SIZE, 0)
        blocks = target.ioctl(_IOCTL_BLOCK_COUNT, 0)
        if size > block_size * blocks:
            raise ImageError(
                "image of %d bytes does not fit the %d-byte slot" % (size, block_size * blocks)
            )
        self.target = target
        self._buffer = bytearray(block_size)
        self._fill = 0
        self._block = 0
        self.written = 0

    def write(self, chunk):
        """The next bytes of the image."""
        buffer = self._buffer
        target = self.target
        if buffer is None or target is None:
            raise ImageError("write before begin")
        view = memoryview(chunk)
        while len(view):
            n = min(len(view), len(buffer) - self._fill)
            buffer[self._fill : self._fill + n] = view[:n]
            self._fill += n
            view = view[n:]
            if self._fill == len(buffer):
                target.writeblocks(self._block, buffer)
                self._block += 1
                self._fill = 0
        self.written += len(chunk)

    def finish(self, sha256_hex):
        """Write the last block, then read the image back and check its SHA-256."""
        buffer = self._buffer
        target = self.target
        if buffer is None or target is None:
            raise ImageError("finish before begin")
        if self._fill:
            for i in range(self._fill, len(buffer)):
                buffer[i] = 0xFF
            target.writeblocks(self._block, buffer)
        digest = hashlib.sha256()
        left = self.written
        block = 0
        while left > 0:
            target.readblocks(block, buffer)
            digest.update(buffer if left >= len(buffer) else buffer[:left])
            left -= len(buffer)
            block += 1
        if binascii.hexlify(digest.digest()).decode() != sha256_hex:
            raise ImageError("the image read back from flash does not match its SHA-256")

    def switch(self):
        """Boot the new image at the next reset (on probation until ``confirm``)."""
        if self.target is None:
            raise ImageError("switch before an image was written")
        self.target.set_boot()


def confirm(esp32):
    """The new image is healthy: keep it (no rollback by the bootloader any more)."""
    esp32.Partition.mark_app_valid_cancel_rollback()


def revert(esp32, label):
    """Boot partition ``label`` (the previous image) at the next reset."""
    esp32.Partition(label).set_boot()
