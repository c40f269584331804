"""``make demo``: a bank's branch network on one machine (see ``hw/demo/__init__.py``).

The imperative shell: it starts the parts as processes, provisions the bank through the
APIs (``hw.demo.bank``), signs customers up and pairs them (``hw.demo.customers``), pushes
their bank statements (``hw.demo.statements``) as the core-banking system would, lets the
shopper into the partner café by the ESP32, prints a line per notable event
(``hw.demo.watch``), plays the faults on a schedule, and on Ctrl-C (or after ``--minutes``,
or with ``--until-recovered`` once the unplugged gateway's offline alert has resolved and
the shopping app has decided for the shopper) stops everything in the reverse order.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bankiot_core.address import mac_from_str
from cloud.config import ConfigError
from cloud.fleet.alert_rules import Thresholds
from hw.cloud_process import CLI, CloudUp, CloudUpFailed
from hw.demo import bank as banking
from hw.demo.customers import Kiosk, KioskVisitor, pair, sign_up
from hw.demo.devices import (
    customers,
    esp32_air,
    everyone,
    frames,
    heard_by_cloud,
    shopper,
    visits_in,
)
from hw.demo.esp32 import Esp32
from hw.demo.statements import statements_of
from hw.demo.watch import Watch
from hw.demo.web import DemoError
from hw.micropython_runner import MicroPythonUnavailable
from hw.ports import free_port

DEFAULT_FOLDER = Path(".demo")
CLOUD_ENV = {
    # An ATM cabinet above 30 degrees is a threshold event (normal again at 28).
    "BANKIOT_INGEST_THRESHOLDS": "temperature>30:28",
}
# The shortest offline time the cloud allows, so an unplugged gateway is noticed soon.
DEFAULT_OFFLINE_AFTER = 30
DEFAULT_UNPLUG_AFTER = 90.0  # a newcomer first sees the branches work, then the fault
STOP_LIMIT_S = 20.0
# With --until-recovered, how long after the recovery the run still waits for the shopping
# app's decision about the shopper (it normally comes well before).
SHOPPING_WAIT_S = 90.0


@dataclass
class Child:
    """A demo gateway process (``hw.demo.gateway_child``) and its log."""

    name: str
    command: list[str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def unplug(self) -> None:
        """Power cut: SIGKILL, nothing saved on the way out."""
        if self.alive():
            assert self.process is not None
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        """SIGTERM, as systemd stops it; SIGKILL if it hangs."""
        if self.alive():
            assert self.process is not None
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_LIMIT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class State:
    """What a resumed demo needs (``demo.json`` in the data folder): ports, the bank, who
    is paired."""

    ports: dict[str, int] = field(default_factory=dict)
    bank: dict | None = None
    paired: list[str] = field(default_factory=list)
    statements: list[str] = field(default_factory=list)  # whose the cloud has imported

    @classmethod
    def load(cls, path: Path) -> State:
        if not path.exists():
            return cls()
        return cls(**json.loads(path.read_text()))

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.__dict__, indent=1))
        path.chmod(0o600)  # it holds the demo operator's API token


class Demo:
    """One run of the demo in ``folder``."""

    def __init__(
        self,
        folder: Path,
        unplug_after: float = DEFAULT_UNPLUG_AFTER,
        offline_after: int = DEFAULT_OFFLINE_AFTER,
    ) -> None:
        self.folder = folder.resolve()
        self.unplug_after = unplug_after
        self.offline_after = offline_after
        self.logs = self.folder / "logs"
        self.state_path = self.folder / "demo.json"
        self.started = time.monotonic()
        self.stack = contextlib.ExitStack()
        self.gateways: dict[str, Child] = {}
        self.kiosk_urls: dict[str, str] = {}  # branch code -> its kiosk page
        self.esp32: Esp32 | None = None
        self.esp32_air = esp32_air()  # the radio thread's: the shopper's visits start later
        self.radio_started = time.monotonic()
        self.customer_ids: dict[str, int] = {}
        names = {**heard_by_cloud(1), **heard_by_cloud(2)}
        names.update({p.address: p.name for p in self.esp32_air})
        self.watch = Watch(self.folder / "cloud" / "bankiot.sqlite3", names)

    def say(self, line: str) -> None:
        print("[%6.1f s] %s" % (time.monotonic() - self.started, line), flush=True)

    # ---- start ------------------------------------------------------------------------------

    def start(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        state = State.load(self.state_path)
        env = {**CLOUD_ENV, "BANKIOT_ALERT_OFFLINE_AFTER": str(self.offline_after)}
        cloud = CloudUp(self.folder / "cloud", self.logs, env=env)
        if state.ports:  # resume: the gateways and the board know these addresses
            cloud.http, cloud.mqtt, cloud.coap = (state.ports[k] for k in ("http", "mqtt", "coap"))
        else:
            state.ports = {"http": cloud.http, "mqtt": cloud.mqtt, "coap": cloud.coap}
            state.save(self.state_path)
        self.say("starting bankiot cloud up (SQLite, Mosquitto, CoAP) in %s" % cloud.data_dir)
        cloud.start()
        self.stack.callback(self._stop_cloud, cloud)
        self.cloud = cloud
        if state.bank is None:
            self.say("provisioning the demo bank through the cloud's APIs")
            banking.first_operator(cloud.data_dir, self.logs / "provisioning.log")
            state.bank = banking.provision(cloud.url).to_json()
            state.save(self.state_path)
        bank = banking.Bank(**state.bank)
        fresh = self._enroll_gateways(bank)
        flashed = self._start_esp32(bank)
        if fresh or flashed:
            banking.configure(cloud.url, bank, esp32=self.esp32 is not None)
        self._banner()
        self._customers(state)
        self._bank_data(state, bank)
        self._open_shop()

    def _gateway_toml(self, n: int, code: str, folder: Path, kiosk_port: int) -> Path:
        prefer = "mqtt" if n == 1 else "coap"  # one branch over each transport
        text = (
            'data_dir = "data"\n\n[cloud]\nurl = "%s"\n\n[uplink]\nprefer = "%s"\n'
            'mqtt = "mqtts://127.0.0.1:%d"\ncoap = "coap://127.0.0.1:%d"\n\n'
            '[sources]\nble = ["hci0"]\n\n[kiosk]\nlisten = "127.0.0.1:%d"\nticket_prefix = "%s"\n'
        ) % (self.cloud.url, prefer, self.cloud.mqtt, self.cloud.coap, kiosk_port, code[0])
        path = folder / "gateway.toml"
        path.write_text(text)
        return path

    def _enroll_gateways(self, bank: banking.Bank) -> bool:
        """Enroll (first run) and start each branch's kiosk gateway; True if any enrolled."""
        enrolled = False
        for n, code in enumerate(bank.branches, start=1):
            folder = self.folder / ("gateway-%s" % code.lower())
            folder.mkdir(exist_ok=True)
            port_file = folder / "kiosk-port"
            if not port_file.exists():
                port_file.write_text(str(free_port()))
            port = int(port_file.read_text())
            config = self._gateway_toml(n, code, folder, port)
            uid = "kiosk-%s" % code.lower()
            if not (folder / "data" / "identity").exists():
                command = [*CLI, "gateway", "enroll", "--config", str(config)]
                command += ["--claim", bank.kiosk_claims[code], "--uid", uid]
                with (self.logs / "provisioning.log").open("ab") as out:
                    if subprocess.run(command, stdout=out, stderr=out, check=False).returncode:
                        raise DemoError(
                            "bankiot gateway enroll %s failed: see logs/provisioning.log" % uid
                        )
                self.say(
                    "gateway %s enrolled in branch %s (kiosk page http://127.0.0.1:%d/)"
                    % (uid, code, port)
                )
                enrolled = True
            child = Child(
                uid,
                [
                    sys.executable,
                    "-m",
                    "hw.demo.gateway_child",
                    "--config",
                    str(config),
                    "--branch",
                    str(n),
                ],
                self.logs / ("%s.log" % uid),
            )
            child.start()
            self.stack.callback(child.stop)
            self.gateways[code] = child
            self.kiosk_urls[code] = "http://127.0.0.1:%d" % port
        return enrolled

    def _start_esp32(self, bank: banking.Bank) -> bool:
        """Power the virtual ESP32 on (flashing it the first time); True if it was flashed
        now (it needs its configuration)."""
        try:
            board = Esp32(self.folder / "esp32", self.cloud.mqtt).start()
        except MicroPythonUnavailable as exc:
            self.say("no virtual ESP32 (%s): the Pi gateways run alone, no partner shop" % exc)
            return False
        self.stack.callback(board.stop)
        self.esp32 = board
        flashed = False
        if not board.flashed:
            self.say("flashing a blank virtual ESP32 with bankiot flash (real MicroPython)")
            self.say(
                board.flash(
                    bank.esp32_claim, self.cloud.url, bank.token, self.logs / "provisioning.log"
                )
            )
            flashed = True
        self.radio_started = time.monotonic()
        threading.Thread(target=self._esp32_radio, args=(board,), daemon=True).start()
        return flashed

    def _radio_ms(self) -> int:
        return int((time.monotonic() - self.radio_started) * 1000)

    def _esp32_radio(self, board: Esp32) -> None:
        while self.esp32 is board:
            for address, payload, rssi in frames(self.esp32_air, self._radio_ms()):
                with contextlib.suppress(Exception):  # a board powering off
                    board.hear(mac_from_str(address), payload, rssi)
            time.sleep(1.0)

    def _customers(self, state: State) -> None:
        self.kiosks = {code: Kiosk(url) for code, url in self.kiosk_urls.items()}
        for n, code in enumerate(self.kiosks, start=1):
            kiosk = self.kiosks[code]
            while kiosk.state() is None:
                time.sleep(0.2)
            # The shopper pairs at N01's kiosk too (its code binds her wearable to N01, whose
            # gateways, the ESP32 among them, then receive its key).
            for customer in customers(n) + ([shopper()] if n == 1 else []):
                if customer.email in state.paired:
                    continue
                browser = sign_up(self.cloud.url, customer)
                pair(browser, kiosk, customer, lambda: self.watch.count("pairing_offers"))
                state.paired.append(customer.email)
                state.save(self.state_path)
                self.say(
                    "%s signed up and paired their wearable at %s's kiosk" % (customer.email, code)
                )
            visitor = KioskVisitor(kiosk, self.say, code).start()
            self.stack.callback(visitor.stop.set)

    def _bank_data(self, state: State, bank: banking.Bank) -> None:
        """Push each paired customer's statements, as the bank's core system does, to the
        customer number the branch manager finds on the Customers dashboard."""
        self.customer_ids = banking.customer_ids(self.cloud.url)
        self.watch.customers = {n: email for email, n in self.customer_ids.items()}
        for customer in everyone():
            if customer.email in state.statements or customer.email not in state.paired:
                continue
            number = self.customer_ids.get(customer.email)
            if number is None:
                raise DemoError("%s is not on the Customers dashboard" % customer.email)
            found = statements_of(customer.simulated, dt.datetime.now(dt.UTC))
            summary = banking.push_statements(self.cloud.url, bank, number, found)
            state.statements.append(customer.email)
            state.save(self.state_path)
            self.say(
                "bank data: %d transactions of %s (%s to %s, camt.053) pushed for %s: %d new"
                % (
                    found.entries,
                    found.account,
                    found.first,
                    found.last,
                    customer.email,
                    summary["new"],
                )
            )

    def _open_shop(self) -> None:
        """The shopper walks into the café next to N01 (and out, and back): her wearable
        joins the ESP32's air now that the bank holds her statements."""
        visits = visits_in(self.esp32_air)
        if self.esp32 is None or visits is None:
            return
        visits.first_ms = self._radio_ms()
        self.say(
            "%s walks into %s next to N01: the ESP32 hears her wearable and the café's beacon"
            % (shopper().email, banking.MERCHANT["name"])
        )

    def _shopper_decided(self) -> bool:
        """Whether the shopping app has decided about the shopper (or there is no shop)."""
        if self.esp32 is None:
            return True
        number = self.customer_ids.get(shopper().email)
        return any(customer == number for customer, _ in self.watch.shopping())

    def _banner(self) -> None:
        url = self.cloud.url
        lines = [
            "",
            "bankiot demo is running.",
            "  Dashboards:      %s/dashboard/" % url,
            "    operations:    %s / %s" % banking.OPERATOR,
            "    branch manager: %s / %s" % banking.MANAGER,
            "  Customer pages:  %s/customer/   (e.g. %s / %s)"
            % (url, customers(1)[0].email, customers(1)[0].password),
            "  Partner shop:    %s, next to N01: %s / %s is told about an offer or a warning"
            % (banking.MERCHANT["name"], shopper().email, shopper().password),
            "                   in her app: %s/customer/notifications" % url,
            "  Bank data:       %s/dashboard/analytics (profiles, segments, life events);" % url,
            "                   each customer's at %s/dashboard/customers" % url,
        ]
        lines += ["  Kiosk %s:       %s/" % (code, u) for code, u in self.kiosk_urls.items()]
        lines += ["  Data and logs:   %s" % self.folder, "Ctrl-C stops everything.", ""]
        print("\n".join(lines), flush=True)

    # ---- run --------------------------------------------------------------------------------

    def run(self, minutes: float | None, until_recovered: bool = False) -> None:
        """Print what happens and play the fault: ``unplug_after`` seconds in, once every
        device of N02 has a reading stored (so the fault hides none of the branch's first
        readings), N02's gateway is unplugged; once its offline alert is open it is plugged
        back in. Returns after ``minutes`` (None: never), or with ``until_recovered`` once
        that alert resolved and the shopping app decided about the shopper (or
        ``SHOPPING_WAIT_S`` after the recovery, whichever is first)."""
        began = time.monotonic()
        unplugged = False
        recovered: float | None = None
        # The victim's latest offline alert when it was unplugged: a resumed folder may hold
        # older ones (open or resolved), and only a newer one is this fault's.
        before = 0
        victim = self.gateways.get(banking.BRANCHES[1][0])
        victim_devices = set(heard_by_cloud(2))
        while minutes is None or time.monotonic() - began < minutes * 60:
            for line in self.watch.poll():
                self.say(line)
            elapsed = time.monotonic() - began
            if (
                victim is not None
                and not unplugged
                and elapsed >= self.unplug_after
                and victim_devices <= self.watch.devices_heard()
            ):
                before = self.watch.latest_alert("offline", victim.name)[0]
                victim.unplug()
                unplugged = True
                self.say(
                    "FAULT: %s unplugged (its offline alert is due in %d s)"
                    % (victim.name, self.offline_after)
                )
            elif victim is not None and unplugged:
                alert, state = self.watch.latest_alert("offline", victim.name)
                noticed = alert > before
                if noticed and state == "open" and not victim.alive():
                    # Plug it back in, and the alert resolves.
                    victim.start()
                    self.say("%s plugged back in" % victim.name)
                elif noticed and state == "resolved" and until_recovered and recovered is None:
                    recovered = time.monotonic()
                    self.say("%s recovered (--until-recovered)" % victim.name)
            if recovered is not None:
                decided = self._shopper_decided()
                if decided or time.monotonic() - recovered > SHOPPING_WAIT_S:
                    for line in self.watch.poll():
                        self.say(line)
                    if not decided:
                        self.say("no shopping decision for %s yet" % shopper().email)
                    self.say("stopping (--until-recovered)")
                    return
            time.sleep(1.0)

    # ---- stop -------------------------------------------------------------------------------

    def _stop_cloud(self, cloud: CloudUp) -> None:
        status = cloud.stop()
        if status != 0:
            self.say("cloud up exited %d (see %s)" % (status, cloud.log))

    def stop(self) -> None:
        """Everything, in the reverse order of starting."""
        if self.esp32 is not None:
            self.esp32, board = None, self.esp32  # ends the radio thread
            del board
        self.stack.close()


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m hw.demo",
        description="A bank's branch network on one machine: cloud, gateways, kiosks, an "
        "ESP32, customers and faults. Ctrl-C stops everything.",
    )
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_FOLDER, help="default: .demo")
    parser.add_argument("--fresh", action="store_true", help="start over (delete the data folder)")
    parser.add_argument("--minutes", type=float, help="stop after this many minutes")
    parser.add_argument("--headless", action="store_true", help="no prompts (tests, CI)")
    parser.add_argument(
        "--unplug-after",
        type=float,
        default=DEFAULT_UNPLUG_AFTER,
        help="seconds into the run until N02's gateway is unplugged (default: 90)",
    )
    parser.add_argument(
        "--offline-after",
        type=int,
        default=DEFAULT_OFFLINE_AFTER,
        help="the cloud's alert_offline_after: seconds of silence before a gateway's offline "
        "alert opens (default: 30, the cloud's minimum)",
    )
    parser.add_argument(
        "--until-recovered",
        action="store_true",
        help="stop once the unplugged gateway's offline alert has resolved (tests)",
    )
    args = parser.parse_args(argv)
    try:  # the cloud's own check, so a bad value stops here and not in cloud up's log
        Thresholds.from_config({"ALERT_OFFLINE_AFTER": args.offline_after})
    except ConfigError as exc:
        parser.error("--offline-after: %s" % exc)
    return args


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run the demo; 0 after Ctrl-C or ``--minutes``, 1 with one line if a part failed."""
    args = parse(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # stopped by a service manager: as Ctrl-C
    if args.fresh and args.data_dir.exists():
        shutil.rmtree(args.data_dir)
    args.data_dir.mkdir(parents=True, exist_ok=True)
    demo = Demo(args.data_dir, args.unplug_after, args.offline_after)
    status = 0
    try:
        demo.start()
        demo.run(args.minutes, args.until_recovered)
    except KeyboardInterrupt:
        print("\nstopping...", flush=True)
    except (DemoError, CloudUpFailed, OSError) as exc:
        print("Error: %s" % str(exc).splitlines()[0], file=sys.stderr)
        status = 1
    finally:
        with contextlib.suppress(KeyboardInterrupt):
            demo.stop()
    print("stopped; run again to resume, or with --fresh to start over.")
    return status
