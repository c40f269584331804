"""What the demo prints as it happens, read from the cloud's database (read only).

``Watch.poll()`` returns one line per notable thing since the last poll: a gateway's first
batch (and over which transport), a device's first reading, a kiosk event, an offer
decision, a threshold crossing, an alert opened or resolved, a customer's first stored
financial profile, a life event found, and the shopping app's decisions with the
notification they left in the customer's inbox. ``Watch.count()``, ``devices_heard()``,
``latest_alert()`` and ``shopping()`` are what the shell waits on. Customers are named by
``customers`` (number -> the demo's email for them) once the shell knows them. The database is
opened read-only (SQLite's ``mode=ro``): the demo never writes into it.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path


class Watch:
    """Read-only views of the cloud's SQLite database at ``path``; ``names`` maps device
    addresses (12 hex digits) to the demo's names for them."""

    def __init__(self, path: Path, names: dict[str, str]) -> None:
        self.path = path
        self.names = names
        self.seen_gateways: set[tuple[str, str]] = set()
        self.seen_devices: set[str] = set()
        self.last: dict[str, int] = {}
        self.alert_states: dict[int, str] = {}
        self.customers: dict[int, str] = {}
        self.seen_profiles: set[int] = set()

    def _query(self, sql: str, *args: object) -> list[tuple]:
        connection = sqlite3.connect("file:%s?mode=ro" % self.path, uri=True, timeout=5)
        try:
            return connection.execute(sql, args).fetchall()
        except sqlite3.OperationalError:  # a table not made yet, or the database busy
            return []
        finally:
            connection.close()

    def count(self, table: str, where: str = "1=1") -> int:
        """Rows of ``table`` (a name from this module, never user input) matching ``where``."""
        rows = self._query("SELECT COUNT(*) FROM %s WHERE %s" % (table, where))
        return rows[0][0] if rows else 0

    def latest_alert(self, kind: str, uid: str) -> tuple[int, str]:
        """The id and state (``open``/``resolved``) of the device ``uid``'s latest ``kind``
        alert; ``(0, "")`` if it never had one."""
        rows = self._query(
            "SELECT a.id, a.state FROM alerts a JOIN devices d ON d.id = a.device_id"
            " WHERE a.kind = ? AND d.uid = ? ORDER BY a.id DESC LIMIT 1",
            kind,
            uid,
        )
        return (rows[0][0], rows[0][1]) if rows else (0, "")

    def shopping(self) -> list[tuple[int, str]]:
        """(customer number, outcome) of the shopping app's decisions, oldest first."""
        return [
            (row[0], row[1])
            for row in self._query(
                "SELECT customer_id, outcome FROM app_decisions"
                " WHERE app = 'shopping' AND customer_id IS NOT NULL ORDER BY id"
            )
        ]

    def devices_heard(self) -> set[str]:
        """Addresses of the devices with at least one reading stored."""
        return {row[0] for row in self._query("SELECT DISTINCT device FROM readings")}

    def _name(self, device: str) -> str:
        return self.names.get(device, device)

    def _who(self, customer_id: int) -> str:
        return self.customers.get(customer_id, "customer #%d" % customer_id)

    def _new(self, key: str, sql: str) -> list[tuple]:
        rows = self._query(sql, self.last.get(key, 0))
        if rows:
            self.last[key] = max(row[0] for row in rows)
        return rows

    def poll(self) -> list[str]:
        """Lines for what happened since the last call."""
        lines: list[str] = []
        for gateway, transport in self._query(
            "SELECT DISTINCT gateway, transport FROM batch_receipts"
        ):
            if (gateway, transport) not in self.seen_gateways:
                self.seen_gateways.add((gateway, transport))
                lines.append(
                    "gateway %s: sealed batches arriving over %s" % (gateway, transport.upper())
                )
        for device, gateway in self._query(
            "SELECT device, MIN(gateway) FROM readings GROUP BY device"
        ):
            if device not in self.seen_devices:
                self.seen_devices.add(device)
                lines.append("reading stored: %s (heard by %s)" % (self._name(device), gateway))
        for _id, gateway, kind, wearable in self._new(
            "kiosk", "SELECT id, gateway, kind, wearable FROM kiosk_events WHERE id > ? ORDER BY id"
        ):
            who = "a customer" if wearable else "a walk-in"
            lines.append("kiosk %s: %s (%s)" % (gateway, kind.replace("_", " "), who))
        for _id, gateway, outcome, offered, reasons in self._new(
            "decisions",
            "SELECT id, gateway, outcome, offered, reasons FROM offer_decisions"
            " WHERE id > ? ORDER BY id",
        ):
            if outcome == "offered":
                what = "OFFER sent: campaign(s) %s" % ", ".join(map(str, json.loads(offered)))
            else:
                what = "no offer: %s" % "; ".join(json.loads(reasons))
            lines.append("check-in at %s -> %s" % (gateway, what))
        for _id, device, data in self._new(
            "thresholds",
            "SELECT id, device, data FROM device_events"
            " WHERE id > ? AND kind = 'threshold' ORDER BY id",
        ):
            d = json.loads(data)
            lines.append(
                "THRESHOLD %s: %s %s %s %s (%s)"
                % (
                    self._name(device),
                    d.get("metric"),
                    d.get("value"),
                    d.get("direction"),
                    d.get("level"),
                    d.get("state"),
                )
            )
        for alert_id, kind, severity, state, uid in self._query(
            "SELECT a.id, a.kind, a.severity, a.state, d.uid"
            " FROM alerts a JOIN devices d ON d.id = a.device_id"
        ):
            if self.alert_states.get(alert_id) != state:
                self.alert_states[alert_id] = state
                lines.append("ALERT %s (%s) %s: %s" % (kind, severity, state, self._name(uid)))
        lines += self._analytics()
        lines += self._shopping()
        return lines

    def _analytics(self) -> list[str]:
        lines = []
        for customer, segment, band, income in self._query(
            "SELECT customer_id, segment, income_band, income_monthly FROM customer_profiles"
            " ORDER BY customer_id"
        ):
            if customer not in self.seen_profiles:
                self.seen_profiles.add(customer)
                lines.append(
                    "PROFILE %s: income %.0f a month, segment %s, income band %s"
                    % (self._who(customer), float(income), segment, band)
                )
        for _id, customer, kind, score in self._new(
            "life_events",
            "SELECT id, customer_id, kind, peak_score FROM life_event_history"
            " WHERE id > ? ORDER BY id",
        ):
            lines.append("LIFE EVENT %s: %s (score %.2f)" % (self._who(customer), kind, score))
        return lines

    def _shopping(self) -> list[str]:
        lines = []
        for _id, customer, outcome, inputs in self._new(
            "shopping",
            "SELECT id, customer_id, outcome, inputs FROM app_decisions"
            " WHERE id > ? AND app = 'shopping' ORDER BY id",
        ):
            merchant = (json.loads(inputs).get("merchant") or {}).get("name", "a partner shop")
            who = "a non-customer" if customer is None else self._who(customer)
            line = "SHOPPING at %s: %s -> %s" % (merchant, who, outcome)
            if customer is not None:
                sent = self.count("notifications", "customer_id = %d" % int(customer))
                line += " (%d notification%s in the app inbox)" % (sent, "" if sent == 1 else "s")
            lines.append(line)
        return lines
