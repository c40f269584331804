"""Resolvable private addresses (Bluetooth Core spec, vol 6 part B 1.3.2.2; vol 3 part H 2.2.2).

Phones and wearables that protect their owner's privacy advertise on an address that changes
every few minutes. The paired device shared its Identity Resolving Key (IRK) at pairing; with
it a gateway recognises each new address as that device's, and nobody else can.

In display order (``AA:BB:CC:DD:EE:FF`` is ``address[0] .. address[5]``) a resolvable private
address is ``prand`` (3 bytes, the top two bits ``01``) then ``hash`` (3 bytes), where::

    hash = ah(IRK, prand) = e(IRK, padding || prand) mod 2**24

``e`` is AES-128 of one block, the key and the block most significant octet first as the
spec writes its numbers, and ``padding`` is 13 zero octets. The answer from the spec's
sample data (vol 3 part H, D.7): IRK ``ec0234a357c8ad05341010a60a397d9b``, prand ``708194``,
hash ``0dfbaa``, so the address ``70:81:94:0D:FB:AA`` resolves with that IRK.

AES comes from a *block cipher factory*: ``factory(key)`` returns a function that encrypts
one 16-byte block with that key. ``default_block_cipher`` uses ``cryptolib.aes(key, 1)`` on
MicroPython boards and ``cryptography``'s AES-ECB on CPython; tests may pass their own.
"""

from bankiot_core.errors import ConfigError

_ECB = 1  # cryptolib's mode number for AES-ECB


def default_block_cipher(key):
    """Return ``encrypt(block) -> bytes``, AES-ECB under ``key``, from what this port has.

    ``cryptolib`` (MicroPython boards) first, then ``cryptography`` (CPython). Raises
    ConfigError when neither is importable.
    """
    try:
        import cryptolib  # type: ignore[import-not-found]  # MicroPython boards

        return cryptolib.aes(key, _ECB).encrypt
    except ImportError:
        pass
    try:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    except ImportError:
        raise ConfigError(
            "no AES-ECB on this interpreter (neither cryptolib nor cryptography):"
            " pass a block cipher factory to resolve private addresses"
        ) from None
    return Cipher(algorithms.AES(key), modes.ECB()).encryptor().update


def is_resolvable(address):
    """True when the 6-byte display-order ``address`` has the form of a resolvable one.

    Only the top two bits say so (``01``); a public address can look the same, so this is a
    hint that resolving is worth trying, not a proof.
    """
    return (address[0] & 0xC0) == 0x40


def ah(encrypt, prand):
    """The spec's random address hash: 3 bytes ``hash`` for 3 bytes ``prand``.

    ``encrypt`` is the IRK's block function (see ``default_block_cipher``).
    """
    block = bytearray(16)
    block[13] = prand[0]
    block[14] = prand[1]
    block[15] = prand[2]
    return bytes(encrypt(block)[13:16])


class RpaResolver:
    """Finds which paired device a resolvable private address belongs to, with a cache.

    ``identities`` is a sequence of ``(identity address, IRK)`` pairs (6 and 16 bytes).
    ``resolve(address)`` returns the identity address (the very object given here, so
    callers can key their state on it without keeping another copy) or None.

    A resolved address is cached, at most ``cache_size`` of them. Devices rotate their
    address every few minutes, so when a device's new address resolves, its previous one is
    forgotten: the cache holds about one entry per paired device. Addresses that do not
    resolve are not remembered at all (they belong to people who are not customers here:
    the privacy rule is to keep nothing about them), so each of their frames costs one AES
    block per IRK.
    """

    def __init__(self, identities, block_cipher=None, cache_size=32):
        factory = block_cipher or default_block_cipher
        self._keys = [(identity, factory(irk)) for identity, irk in identities]
        self._cache = {}
        self._cache_size = cache_size
        self._block = bytearray(16)
        self.resolved = 0  # addresses resolved by AES (cache misses that matched)

    def __len__(self):
        return len(self._cache)

    def resolve(self, address):
        """Return the identity address ``address`` resolves to, or None."""
        identity = self._cache.get(address)
        if identity is not None:
            return identity
        if not self._keys or (address[0] & 0xC0) != 0x40:
            return None
        block = self._block
        block[13] = address[0]
        block[14] = address[1]
        block[15] = address[2]
        for identity, encrypt in self._keys:
            out = encrypt(block)
            if out[13] == address[3] and out[14] == address[4] and out[15] == address[5]:
                self._remember(bytes(address), identity)
                self.resolved += 1
                return identity
        return None

    def _remember(self, address, identity):
        cache = self._cache
        for old in [a for a in cache if cache[a] is identity]:
            del cache[old]
        if len(cache) >= self._cache_size:
            cache.popitem()
        cache[address] = identity

    def forget(self):
        """Drop every cached address (after the paired devices changed)."""
        self._cache.clear()
