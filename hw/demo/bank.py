"""The demo bank, provisioned through the APIs a real deployment uses (no database writes).

The first operations account is made as the operations guide says (``bankiot cloud
operator create --password-stdin``); everything else goes over HTTP as that operator:
sign in, an API token, two branches, a branch manager, a partner merchant with its beacon
(registered with its radio address, so a gateway that listens for it places what it hears
at the shop), the keys of the branches' encrypted sensors (wearable bindings), claims for
each branch's kiosk gateway and for the virtual ESP32, and an active kiosk campaign.
Gateways' filter and batching settings follow once they are enrolled (``configure``): the
ESP32, the gateway by the partner café's wall, also listens for the café's beacon.

Bank data comes in as the bank's core system sends it: the branch manager looks the
customers up on the Customers dashboard (``customer_ids``: their numbers, which the bank
links accounts to), and each customer's camt.053 statements (``hw.demo.statements``) are
pushed to ``POST /api/bank/statements`` with that number (``push_statements``); the cloud
imports them and recomputes the customer's financial profile and life events.
"""

from __future__ import annotations

import datetime as dt
import html
import re
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hw.cloud_process import CLI
from hw.demo.devices import CAFE_BEACON, branch_air, esp32_air
from hw.demo.statements import Statements
from hw.demo.web import Browser, DemoError

OPERATOR = ("demo-ops", "operations demo 2026")
MANAGER = ("demo-manager", "branch manager demo 2026")
BRANCHES = (("N01", "North Main Street"), ("N02", "Harbour Square"))
MERCHANT = {"name": "Café Nord", "category": "5814"}
MERCHANT_BEACON = {**CAFE_BEACON, "label": "by the till"}
# A customer's row on the Customers dashboard, as a branch manager sees it (emails shown).
CUSTOMER_ROW = re.compile(r'href="/dashboard/customers/(\d+)" id="customer-\d+">([^<]+)</a>')
# What the demo's gateways run with: batches every second (the default waits up to 30 s
# for a fuller batch) and a health record every 10 s, so the dashboards move at once.
GATEWAY_SETTINGS = {"batch_max_delay_ms": 1000, "health_interval_ms": 10_000}


@dataclass
class Bank:
    """What provisioning made: the operator's API token, branch ids by code, one-use claim
    tokens (kiosk per branch code, and the ESP32's), the campaign's id."""

    token: str
    branches: dict[str, int]
    kiosk_claims: dict[str, str]
    esp32_claim: str
    campaign: int
    merchant: int
    done: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def first_operator(data_dir: Path, log: Path) -> None:
    """``bankiot cloud operator create`` for the demo's operations account (as in the
    operations guide's first start); the password from standard input."""
    name, password = OPERATOR
    with log.open("ab") as out:
        result = subprocess.run(
            [
                *CLI,
                "cloud",
                "operator",
                "create",
                name,
                "--role",
                "operations",
                "--data-dir",
                str(data_dir),
                "--password-stdin",
            ],
            input=(password + "\n").encode(),
            stdout=out,
            stderr=out,
            check=False,
        )
    if result.returncode != 0:
        raise DemoError("bankiot cloud operator create failed: see %s" % log)


def provision(url: str) -> Bank:
    """Sign in as the operator and provision the demo bank over the HTTP API."""
    session = Browser(url)
    session.login(*OPERATOR)
    token = session.api("POST", "/api/tokens", {"name": "make demo", "expires_in_days": 30})
    api = Browser(url, token["token"])
    branches = {}
    for code, name in BRANCHES:
        branches[code] = api.api("POST", "/api/branches", {"code": code, "name": name})["id"]
    name, password = MANAGER
    api.api(
        "POST",
        "/api/operators",
        {"name": name, "role": "branch_manager", "branches": list(branches), "password": password},
    )
    merchant = api.api("POST", "/api/fleet/merchants", MERCHANT)["id"]
    api.api(
        "POST", "/api/fleet/beacons", {"kind": "eddystone", "merchant": merchant, **MERCHANT_BEACON}
    )
    for n, branch_id in enumerate(branches.values(), start=1):
        for placed in branch_air(n):
            if placed.bank_owned and placed.key is not None:  # encrypted: the gateways need its key
                path = "/api/fleet/branches/%d/wearables/%s" % (branch_id, placed.address)
                api.api("PUT", path, {"irk": None, "bind_key": placed.key.hex()})
    kiosk_claims = {code: claim(api, branch_id, "kiosk") for code, branch_id in branches.items()}
    esp32_claim = claim(api, branches[BRANCHES[0][0]], "gateway")
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    campaign = api.api(
        "POST",
        "/api/offers/campaigns",
        {
            "name": "Travel card (demo)",
            "title": "Travel card",
            "text": "No card fees abroad for a year. Ask at the counter.",
            "channel": "kiosk",
            "audience": True,
            "cap_count": 3,
            "cap_days": 1,
            "starts_at": (now - dt.timedelta(days=1)).isoformat(),
            "ends_at": (now + dt.timedelta(days=365)).isoformat(),
            "status": "active",
        },
    )["id"]
    return Bank(token["token"], branches, kiosk_claims, esp32_claim, campaign, merchant)


def claim(api: Browser, branch_id: int, kind: str) -> str:
    """A claim token for a ``kind`` device of the branch (``POST /api/identity/claims``)."""
    body = {"branch_id": branch_id, "kind": kind, "note": "make demo"}
    return api.api("POST", "/api/identity/claims", body)["token"]


def configure(url: str, bank: Bank, esp32: bool) -> None:
    """Every enrolled gateway of each branch gets the demo's settings, the devices it hears
    in ``paired`` and its uplink: MQTT in N01, CoAP in N02 (``PUT /api/fleet/config``, by
    branch and kind). The kiosks pair their branch's own devices; the ESP32 (``esp32``: it
    is enrolled, kind ``gateway`` in N01) the ATM cabinet it watches and the partner café's
    beacon: an operator's choice, since a merchant's beacon joins no gateway by itself."""
    api = Browser(url, bank.token)
    for n, branch_id in enumerate(bank.branches.values(), start=1):
        paired = [p.address for p in branch_air(n) if p.bank_owned]
        uplink = "mqtt" if n == 1 else "coap"  # one branch over each transport
        settings = {**GATEWAY_SETTINGS, "paired": paired, "uplink": uplink}
        body = {"branch": branch_id, "kind": "kiosk", "settings": settings}
        api.api("PUT", "/api/fleet/config", body)
        if n == 1 and esp32:
            paired = [p.address for p in esp32_air() if p.bank_owned] + [CAFE_BEACON["address"]]
            settings = {**GATEWAY_SETTINGS, "paired": paired, "uplink": uplink}
            body = {"branch": branch_id, "kind": "gateway", "settings": settings}
            api.api("PUT", "/api/fleet/config", body)


def customer_ids(url: str) -> dict[str, int]:
    """Email -> customer number of every customer who paired at the manager's branches, as
    the branch manager reads them on the Customers dashboard (``/dashboard/customers``)."""
    manager = Browser(url)
    manager.login(*MANAGER)
    status, page = manager.request("GET", "/dashboard/customers", None, {})
    if status != 200:
        raise DemoError("GET /dashboard/customers answered %d" % status)
    return {html.unescape(email): int(number) for number, email in CUSTOMER_ROW.findall(page)}


def push_statements(url: str, bank: Bank, customer_id: int, statements: Statements) -> dict:
    """Push one customer's statements as the core-banking system does (``POST
    /api/bank/statements``, multipart, ``customer``: who owns the account); the file's
    import summary (``new``, ``present`` ...)."""
    api = Browser(url, bank.token)
    answer = api.upload(
        "/api/bank/statements",
        [(statements.name, statements.data, "application/xml")],
        {"format": "camt", "customer": str(customer_id)},
    )
    return answer["files"][0]
