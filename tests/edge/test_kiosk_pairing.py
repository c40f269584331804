"""Pairing codes made at the kiosk: their format, and that each is queued as a sealed
``pairing`` kiosk event before the screen shows it (the default when the kiosk runs)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bankiot_core.batch import KIOSK_PAIRING
from cloud.customers import codes
from edge.kiosk import pairing
from edge.kiosk.server import make_app
from tests.edge.kiosk_support import Branch
from tests.support.environment import free_port

UID = "kiosk-p1"
SHOWN = re.compile(r"^[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$")  # Crockford, no I L O U


def test_codes_are_eight_crockford_characters_shown_four_and_four() -> None:
    assert pairing.ALPHABET == "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford's table
    assert not set("ILOU") & set(pairing.ALPHABET) and len(set(pairing.ALPHABET)) == 32
    made = {pairing.new_code() for _ in range(200)}
    assert len(made) == 200  # 40 random bits: two hundred codes never repeat in practice
    assert all(len(code) == 8 and set(code) <= set(pairing.ALPHABET) for code in made)
    assert all(SHOWN.match(pairing.shown(code)) for code in made)
    assert pairing.shown("7KQ2M9XD") == "7KQ2-M9XD"
    # what the customer types back, as shown or sloppily, is the code the kiosk sent
    assert codes.normalize("7KQ2-M9XD") == "7KQ2M9XD"
    assert codes.normalize(" 7kq2 m9xd ") == "7KQ2M9XD"
    assert codes.normalize("7KQ2-M9XO") == "7KQ2M9X0"  # O read as zero, Crockford's rule
    assert pairing.ALPHABET == codes.ALPHABET


def test_a_code_is_recorded_before_it_is_returned() -> None:
    recorded: list[tuple[int, bytes | None, str]] = []
    draws = iter("7KQ2M9XD")
    source = pairing.KioskPairingCodes(
        lambda kind, wearable, detail: recorded.append((kind, wearable, detail)),
        choice=lambda alphabet: next(draws),
    )
    assert asyncio.run(source.pairing_code()) == "7KQ2-M9XD"
    assert recorded == [(KIOSK_PAIRING, None, "7KQ2M9XD")]


def test_a_code_that_cannot_be_queued_is_not_shown() -> None:
    def full(kind: int, wearable: bytes | None, detail: str) -> None:
        raise OSError("queue full")

    source = pairing.KioskPairingCodes(full)
    with pytest.raises(OSError, match="queue full"):
        asyncio.run(source.pairing_code())


def test_the_running_kiosk_shows_a_code_and_queues_it_sealed(tmp_path: Path) -> None:
    branch = Branch(tmp_path, UID, free_port())  # no pairing source given: the default

    async def ask() -> dict[str, Any]:
        page = branch.page
        app = make_app(page.kiosk, page.host, page.port)
        client = TestClient(TestServer(app, host=page.host, port=page.port))
        await client.start_server()
        try:
            response = await client.post("/api/action", json={"action": "pairing"})
            assert response.status == 200
            return await response.json()
        finally:
            await client.close()

    view = asyncio.run(ask())
    assert view["screen"] == "pairing" and SHOWN.match(view["pairing_code"])
    events = branch.kiosk_events()
    assert events == [("pairing", events[0][1], None, view["pairing_code"].replace("-", ""))]
    branch.runtime.engine.queue.close()
