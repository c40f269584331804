"""Test stand-in for MicroPython's ``esp32`` module (never installed on a board).

``Partition`` over an in-memory flash with MicroPython's OTA layout: ``factory`` is not
there; ``ota_0`` runs, ``ota_1`` is the idle slot (``_running`` says which runs). What the
firmware does is recorded in ``_calls`` (``("writeblocks", label, block)``,
``("set_boot", label)``, ``("mark_app_valid_cancel_rollback",)``...), the slots' bytes in
``_flash`` (label -> bytearray), the partition chosen for the next boot in ``_boot``.
``writeblocks(block, buf)`` without an offset erases the block first, as on the board;
blocks are ``BLOCK_SIZE`` (4096) bytes. Hook: ``_reset(size)``.
"""

BLOCK_SIZE = 4096
_SLOT_BLOCKS = 16  # 64 KB slots here; 1.5 to 2 MB on a real board

_calls = []
_flash = {}
_running = "ota_0"
_boot = "ota_0"
_valid = {}


def _reset(blocks=_SLOT_BLOCKS):
    global _running, _boot
    del _calls[:]
    _flash.clear()
    _valid.clear()
    for label in ("ota_0", "ota_1"):
        _flash[label] = bytearray(b"\xff" * (BLOCK_SIZE * blocks))
        _valid[label] = True
    _running = "ota_0"
    _boot = "ota_0"


_reset()


class Partition:
    BOOT = 0
    RUNNING = 1
    TYPE_APP = 0
    TYPE_DATA = 1

    def __init__(self, id, block_size=BLOCK_SIZE):
        if id == Partition.RUNNING:
            id = _running
        elif id == Partition.BOOT:
            id = _boot
        if id not in _flash:
            raise ValueError("partition not found")
        self.label = id
        self.block_size = block_size

    def info(self):
        index = 0 if self.label == "ota_0" else 1
        size = len(_flash[self.label])
        return (Partition.TYPE_APP, 0x10 + index, 0x10000 + index * size, size, self.label, False)

    def get_next_update(self):
        _calls.append(("get_next_update", self.label))
        return Partition("ota_1" if self.label == "ota_0" else "ota_0")

    def readblocks(self, block_num, buf, offset=0):
        start = block_num * BLOCK_SIZE + offset
        flash = _flash[self.label]
        buf[:] = flash[start : start + len(buf)]

    def writeblocks(self, block_num, buf, offset=None):
        _calls.append(("writeblocks", self.label, block_num))
        flash = _flash[self.label]
        start = block_num * BLOCK_SIZE + (offset or 0)
        if start + len(buf) > len(flash):
            raise OSError(22)  # EINVAL: past the partition's end
        if offset is None:  # the simple form erases the blocks first
            first = block_num * BLOCK_SIZE
            end = first + ((len(buf) + BLOCK_SIZE - 1) // BLOCK_SIZE) * BLOCK_SIZE
            flash[first:end] = b"\xff" * (end - first)
        for i in range(len(buf)):
            flash[start + i] &= buf[i]  # flash bits only go from 1 to 0 without an erase

    def ioctl(self, cmd, arg):
        if cmd == 4:
            return len(_flash[self.label]) // BLOCK_SIZE
        if cmd == 5:
            return BLOCK_SIZE
        if cmd == 6:
            _calls.append(("erase", self.label, arg))
            start = arg * BLOCK_SIZE
            _flash[self.label][start : start + BLOCK_SIZE] = b"\xff" * BLOCK_SIZE
            return 0
        return None

    def set_boot(self):
        global _boot
        _calls.append(("set_boot", self.label))
        _boot = self.label
        _valid[self.label] = False  # on probation until marked valid

    @classmethod
    def mark_app_valid_cancel_rollback(cls):
        _calls.append(("mark_app_valid_cancel_rollback",))
        _valid[_running] = True
