"""Why identity and enrollment refuse something: one typed exception per reason.

Every error carries a one-line message for people and the HTTP status the views answer
with; the views turn them into apiflask's JSON error body. Messages never contain a token,
a key or a certificate's private part.
"""

from __future__ import annotations


class IdentityError(Exception):
    """Base of every refusal in ``cloud.identity``; not raised itself."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class CANotInitialised(IdentityError):
    """The fleet CA's files are missing: ``bankiot cloud ca init`` was never run."""

    status = 503


class CAExists(IdentityError):
    """``ca init`` would overwrite an existing issuing CA."""

    status = 409


class KeyFileError(IdentityError):
    """A private key file cannot be read: missing, wrong passphrase, not a key."""

    status = 503


class InvalidCSR(IdentityError):
    """A certificate signing request that cannot be signed (format, signature, key, subject)."""

    status = 422


class InvalidRequest(IdentityError):
    """A well-formed request that asks for something the rules do not allow."""

    status = 422


class ClaimUnknown(IdentityError):
    """No claim has this token (or it was cancelled)."""

    status = 401


class ClaimUsed(IdentityError):
    """The claim token was already redeemed: claims are single use."""

    status = 409


class ClaimExpired(IdentityError):
    """The claim token's expiry has passed."""

    status = 410


class UidTaken(IdentityError):
    """Another device record already has this uid."""

    status = 409


class CertificateRefused(IdentityError):
    """A certificate that does not chain to the fleet CA, has expired, or is unknown."""

    status = 403


class CertificateRevoked(CertificateRefused):
    """A certificate the fleet CA has revoked."""
