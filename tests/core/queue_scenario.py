"""A gateway's queue across reboots, runnable on both interpreters.

``tests/core/test_queue.py`` runs ``boot(root, actions)`` once per boot: on CPython with a
fresh ``Queue`` over the same directory, and under real MicroPython in a fresh VM per boot
with ``/data`` carried from one boot to the next (``export=["/data"]`` then ``files=``), as
flash is on a board. Both must give the outcome the queue's rules predict (``EXPECTED`` in the
test).

Actions: ``["enqueue", seq, size]``, ``["urgent", seq, size]``, ``["send", now_ms]``,
``["ack", seq]``, ``["ack_through", seq]``, ``["enqueue_raises", seq, size]``. The envelope of
batch ``seq`` is ``payload(seq, size)``; a sent batch is reported as ``[seq, intact]``.

Common subset of CPython and MicroPython: no f-strings, no annotations.
"""

from bankiot_core.errors import LocalError
from bankiot_core.queue import Queue
from bankiot_core.queue_files import FileStorage

CAPACITY = 100
RESEND_MS = 1000
MAX_IN_FLIGHT = 3


def payload(seq, size):
    """Recognisable bytes for batch ``seq``: a header with the number and size, then filler."""
    head = ("%d:%d:" % (seq, size)).encode()
    return (head + bytes([(seq + i) & 0xFF for i in range(size)]))[:size]


def boot(root, actions):
    """Open the queue in ``root``, run ``actions``, return what each did and the state."""
    queue = Queue(FileStorage(root), CAPACITY, RESEND_MS, MAX_IN_FLIGHT)
    opened = {"seqs": queue.seqs(), "loss": list(queue.loss())}
    results = []
    for action in actions:
        op = action[0]
        if op in ("enqueue", "urgent"):
            results.append(queue.enqueue(action[1], payload(action[1], action[2]), op == "urgent"))
        elif op == "enqueue_raises":
            try:
                queue.enqueue(action[1], payload(action[1], action[2]))
                results.append("accepted")
            except LocalError:
                results.append("refused")
        elif op == "send":
            out = queue.next_to_send(action[1])
            if out is None:
                results.append(None)
            else:
                seq, data = out
                size = len(data)
                results.append([seq, bytes(data) == payload(seq, size)])
        elif op == "ack":
            results.append(queue.ack(action[1]))
        elif op == "ack_through":
            results.append(queue.ack_through(action[1]))
        else:
            raise ValueError("unknown action %r" % (op,))
    outcome = {
        "opened": opened,
        "results": results,
        "seqs": queue.seqs(),
        "bytes": queue.bytes_used,
        "loss": list(queue.loss()),
        "in_flight": queue.in_flight(),
    }
    queue.close()
    return outcome
