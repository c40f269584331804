"""Test stand-in for MicroPython's ``ssl`` module (never installed on a board).

No TLS happens: ``wrap_socket`` returns the socket it was given, so the bytes the firmware
sends are the plain MQTT a test can read. What the firmware asked for is recorded for the
test to check (``_contexts``: every context made; each keeps ``verify_mode``,
``cafile``/``cadata``, ``certfile``/``keyfile`` and ``server_hostname``). As on the board,
a new context verifies nothing (``CERT_NONE``) until told to.
"""

PROTOCOL_TLS_CLIENT = 0
PROTOCOL_TLS_SERVER = 1
CERT_NONE = 0
CERT_OPTIONAL = 1
CERT_REQUIRED = 2

_contexts = []


class SSLContext:
    def __init__(self, protocol):
        self.protocol = protocol
        self.verify_mode = CERT_NONE
        self.cafile = None
        self.cadata = None
        self.certfile = None
        self.keyfile = None
        self.server_hostname = None
        self.wrapped = 0
        _contexts.append(self)

    def load_verify_locations(self, cafile=None, cadata=None):
        if cafile is not None:
            open(cafile, "rb").close()  # a missing file fails as on the board
        self.cafile = cafile
        self.cadata = cadata

    def load_cert_chain(self, certfile, keyfile):
        open(certfile, "rb").close()
        open(keyfile, "rb").close()
        self.certfile = certfile
        self.keyfile = keyfile

    def wrap_socket(
        self, sock, server_side=False, do_handshake_on_connect=True, server_hostname=None
    ):
        self.server_hostname = server_hostname
        self.wrapped += 1
        return sock
