"""Operator passwords: Argon2id hashes (argon2-cffi) and the password policy.

Parameters are OWASP's Password Storage Cheat Sheet configuration for Argon2id: 19 MiB of
memory, 2 iterations, 1 lane, 16-byte salt, 32-byte hash (about 30 ms on one core). They are
written into every hash (PHC string format), so raising them later needs no migration:
``needs_rehash`` tells the login view to re-hash with the new parameters on the next sign-in.
"""

from __future__ import annotations

from functools import cache

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 12
MAX_LENGTH = 1024  # a bound, so hashing cost stays bounded too

_HASHER = PasswordHasher(
    time_cost=2, memory_cost=19 * 1024, parallelism=1, hash_len=32, salt_len=16, type=Type.ID
)


class PasswordPolicyError(ValueError):
    """A new password that does not meet the policy; the message says why, in one line."""


def check_policy(name: str, password: str) -> None:
    """Raise PasswordPolicyError unless ``password`` is acceptable for account ``name``."""
    if len(password) < MIN_LENGTH:
        raise PasswordPolicyError("a password needs at least %d characters" % MIN_LENGTH)
    if len(password) > MAX_LENGTH:
        raise PasswordPolicyError("a password has at most %d characters" % MAX_LENGTH)
    if name and name.lower() in password.lower():
        raise PasswordPolicyError("a password must not contain the account name")


def hash_password(password: str) -> str:
    """The Argon2id hash of ``password`` (PHC string, with a fresh random salt)."""
    return _HASHER.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    """True when ``password`` matches ``stored_hash``; False for a wrong or unusable hash."""
    try:
        return _HASHER.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    """True when ``stored_hash`` was made with other parameters than today's."""
    try:
        return _HASHER.check_needs_rehash(stored_hash)
    except InvalidHashError:
        return True


@cache
def _dummy_hash() -> str:
    return _HASHER.hash("no such operator: equal work for unknown names")


def burn_verification(password: str) -> None:
    """Do the work of one verification, for a name that does not exist.

    A login for an unknown name then costs as long as one with a wrong password, so response
    times do not tell which names exist.
    """
    verify_password(_dummy_hash(), password)
