"""The core's one error hierarchy.

Every failure the core reports is a ``CoreError`` with a one-line human message. It is split
in two, as h11 does: ``LocalError`` means this side was asked to do something impossible
(bad configuration, a frame too large to send), ``RemoteError`` means what arrived from the
outside is bad (a malformed advertisement, a forged envelope, a replayed counter). Drivers
catch ``RemoteError`` at the edge, count it and carry on.

``CoreError`` itself cannot be raised directly: raise the most specific subclass.
"""


class CoreError(Exception):
    """Base of every error the portable core raises. Not raised directly."""

    def __init__(self, message):
        if type(self) is CoreError:
            raise TypeError("raise a subclass of CoreError, not CoreError itself")
        super().__init__(message)
        self.message = message

    def __str__(self):
        return self.message


class LocalError(CoreError):
    """This side asked for something impossible (configuration, sizes, state)."""


class RemoteError(CoreError):
    """Input from outside is bad: drop it, count it, carry on."""


class DecodeError(RemoteError):
    """Bytes that do not parse: truncated, malformed, unknown format or object."""


class AuthenticationError(RemoteError):
    """A frame or envelope whose key, MIC or tag does not check out."""


class ReplayError(RemoteError):
    """A counter or sequence number that was already seen or is too old."""


class ConfigError(LocalError):
    """A configuration value that is missing, of the wrong type or out of range."""
