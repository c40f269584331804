"""Operator passwords: Argon2id with the documented parameters, checked against OpenSSL's."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher
from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from sqlalchemy import select

from cloud.db import database
from cloud.people.models import Operator
from cloud.people.passwords import (
    PasswordPolicyError,
    check_policy,
    hash_password,
    needs_rehash,
    verify_password,
)
from tests.cloud.people_actions import PASSWORD, add_operator

SECRET = "correct horse battery staple"


def test_hash_is_argon2id_with_the_documented_parameters() -> None:
    stored = hash_password(SECRET)
    assert stored != SECRET and SECRET not in stored
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert hash_password(SECRET) != stored  # a fresh salt each time


def test_an_independent_implementation_agrees() -> None:
    # cryptography's Argon2id runs OpenSSL's implementation, not argon2-cffi's.
    stored = hash_password(SECRET)
    Argon2id.verify_phc_encoded(SECRET.encode(), stored)
    with pytest.raises(InvalidKey):
        Argon2id.verify_phc_encoded(b"correct horse battery stapler", stored)
    theirs = Argon2id(
        salt=b"0123456789abcdef", length=32, iterations=2, lanes=1, memory_cost=19456
    ).derive_phc_encoded(SECRET.encode())
    assert verify_password(theirs, SECRET)
    assert not verify_password(theirs, SECRET.upper())


def test_verify_refuses_wrong_passwords_and_broken_hashes() -> None:
    stored = hash_password(SECRET)
    assert verify_password(stored, SECRET)
    assert not verify_password(stored, SECRET + " ")
    assert not verify_password("not a hash", SECRET)
    assert not verify_password(stored[:-4], SECRET)


def test_hashes_with_older_parameters_need_a_rehash() -> None:
    older = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash(SECRET)
    assert verify_password(older, SECRET)
    assert needs_rehash(older)
    assert not needs_rehash(hash_password(SECRET))


@pytest.mark.parametrize(
    ("password", "needle"),
    [
        ("short", "at least 12"),
        ("x" * 1025, "at most 1024"),
        ("my name is Alice ok", "account name"),
    ],
)
def test_policy_names_the_problem(password: str, needle: str) -> None:
    with pytest.raises(PasswordPolicyError, match=needle):
        check_policy("alice", password)
    check_policy("alice", "a long enough passphrase")


def test_the_database_keeps_only_the_hash_and_upgrades_it(cloud_app) -> None:
    add_operator(cloud_app, "ops", "operations")
    with cloud_app.app_context(), database().sessions() as db:
        operator = db.scalars(select(Operator)).one()
        assert operator.password_hash != PASSWORD and PASSWORD not in operator.password_hash
        assert verify_password(operator.password_hash, PASSWORD)
        older = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)
        operator.password_hash = older.hash(PASSWORD)  # as stored before parameters rose
        db.commit()
    login = {"name": "ops", "password": PASSWORD}
    assert cloud_app.test_client().post("/api/auth/login", json=login).status_code == 200
    with cloud_app.app_context(), database().sessions() as db:
        stored = db.scalars(select(Operator.password_hash)).one()
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")  # re-hashed at sign-in
    assert verify_password(stored, PASSWORD)
