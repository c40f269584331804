"""A seeded synthetic population of bank customers with planted life events.

Each customer is one current account over ``days`` days: a salary (monthly, four-weekly or
weekly, from a named employer, small overtime noise, yearly rises, one-off bonuses), rent or
a mortgage, bills by direct debit (energy, water, council tax, broadband, mobile, streaming,
gym, insurance), everyday card spending by ISO 18245 code (groceries, eating out,
transport, fuel, clothing, pharmacy, cinema, department stores, cash, gifts), random shocks
(car repairs, vet bills) and a balance that makes people cut back on treats when overdrawn.

Planted events (``PlantedEvent``, the ground truth) change the flows, never add a marker:

- ``job_change``: the salary stops and another employer's starts (sometimes after a gap
  month), or the same employer pays 8-30 % more or 8-25 % less.
- ``moving_house``: rent or mortgage to a new payee (or the same lender, a new amount),
  removals or van hire (most movers), weeks of DIY and furniture, new utility, council and
  broadband payees (each with some probability).
- ``new_child``: baby and children's shops before and after the birth, more pharmacy and
  groceries, less eating out, child benefit every four weeks (most claim, weeks later).
- ``relationship``: a start (a new monthly transfer to or from a partner, more eating out
  and groceries, flowers) or an end (the partner's transfer stops, less eating out and
  groceries); either sometimes with a move.

Confounders without a planted event make the detectors work for it: renovations (DIY and
furniture bursts), utility provider switches, a new letting agent collecting the same rent,
yearly pay rises of 1-4 %, bonuses, families that already receive child benefit and shop
for children, gifts at toy shops, small transfers to relatives, a friend repaying a loan in
a few monthly transfers.

Everything comes from ``random.Random`` seeded with the population seed and the customer's
index, so a customer is the same whichever population slice generates it.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

from cloud.analytics.records import AnalyticsError, Transaction

START = date(2025, 1, 1)
CURRENCY = "GBP"
LIFE_EVENTS = ("moving_house", "new_child", "job_change", "relationship")
# Life events are planted in this range of days, so that there is a baseline of six months
# before and at least three months after within 18 months of data.
EVENT_FIRST_DAY = 180
EVENT_LAST_DAY = 450
CENT = Decimal("0.01")

SALARY_CODE = "PMNT-RCDT-SALA"
CREDIT_CODE = "PMNT-RCDT-ESCT"
STANDING_ORDER = "PMNT-ICDT-STDO"
DIRECT_DEBIT = "PMNT-RDDT-ESDD"
CARD = "PMNT-CCRD-POSD"

EMPLOYERS = (
    "ACME LTD",
    "NORTHWIND TRADING LTD",
    "CONTOSO UK LTD",
    "GLOBEX PLC",
    "INITECH LTD",
    "UMBRELLA HEALTH NHS TRUST",
    "STARK LOGISTICS LTD",
    "WAYNE RETAIL PLC",
    "HOOLI UK LTD",
    "CYBERDYNE SYSTEMS LTD",
    "SOYLENT FOODS LTD",
    "TYRELL BIOTECH LTD",
    "CITY COUNCIL PAYROLL",
    "OCEANIC AIRLINES LTD",
    "MASSIVE DYNAMIC LTD",
    "VANDELAY INDUSTRIES LTD",
)
LETTING = (
    "OAK LETTINGS",
    "CITY HOMES LETTINGS",
    "FOXTONS RENT",
    "BRICK LANE PROPERTIES",
    "HARBOUR LETTINGS LTD",
    "GREENFIELD ESTATES",
)
LENDERS = (
    "NATIONWIDE BS MORTGAGE",
    "HALIFAX MORTGAGE",
    "SANTANDER MORTGAGE",
    "YORKSHIRE BS",
    "BARCLAYS MORTGAGE",
    "COVENTRY BS",
)
ENERGY = ("OCTOPUS ENERGY", "BRITISH GAS", "EDF ENERGY", "EON NEXT", "OVO ENERGY", "SSE ENERGY")
WATER = ("THAMES WATER", "ANGLIAN WATER", "SEVERN TRENT", "UNITED UTILITIES", "YORKSHIRE WATER")
COUNCILS = (
    "LEEDS CITY COUNCIL",
    "BRISTOL CITY COUNCIL",
    "CAMDEN COUNCIL",
    "MANCHESTER CC",
    "READING BOROUGH COUNCIL",
    "OXFORD CITY COUNCIL",
    "HACKNEY COUNCIL",
)
BROADBAND = ("BT BROADBAND", "SKY BROADBAND", "VIRGIN MEDIA", "TALKTALK", "PLUSNET")
MOBILE = ("EE LIMITED", "VODAFONE", "O2 UK", "THREE UK", "GIFFGAFF")
STREAMING = (
    ("NETFLIX.COM", 4899),
    ("SPOTIFY", 5815),
    ("DISNEY PLUS", 4899),
    ("APPLE.COM/BILL", 5818),
)
GYMS = ("PUREGYM", "THE GYM GROUP", "DAVID LLOYD")
INSURERS = ("AVIVA INSURANCE", "DIRECT LINE", "ADMIRAL INSURANCE", "LV INSURANCE")
FIRST = (
    "OLIVER",
    "AMELIA",
    "GEORGE",
    "ISLA",
    "HARRY",
    "AVA",
    "NOAH",
    "MIA",
    "JACK",
    "IVY",
    "LEO",
    "GRACE",
    "ARTHUR",
    "FREYA",
    "MUHAMMAD",
    "LILY",
    "OSCAR",
    "SOPHIA",
    "ALFIE",
    "EMILY",
)
LAST = (
    "SMITH",
    "JONES",
    "TAYLOR",
    "BROWN",
    "WILLIAMS",
    "WILSON",
    "JOHNSON",
    "DAVIES",
    "PATEL",
    "WRIGHT",
    "ROBINSON",
    "THOMPSON",
    "EVANS",
    "WALKER",
    "KHAN",
    "HUGHES",
    "GREEN",
    "LEWIS",
)

# Everyday spending: category -> (MCCs, merchants, visits per 30 days, mean amount in GBP).
SPENDING: dict[str, tuple[tuple[int, ...], tuple[str, ...], float, float]] = {
    "groceries": (
        (5411,),
        ("TESCO STORES", "SAINSBURYS", "ASDA", "ALDI", "LIDL", "CO-OP FOOD"),
        11.0,
        32.0,
    ),
    "eating_out": (
        (5812, 5814),
        ("NANDOS", "PRET A MANGER", "WAGAMAMA", "PIZZA EXPRESS", "GREGGS", "THE RED LION"),
        5.0,
        21.0,
    ),
    "transport": ((4111, 4121), ("TFL TRAVEL", "UBER TRIP", "TRAINLINE", "STAGECOACH"), 7.0, 9.0),
    "clothing": ((5651, 5691), ("NEXT RETAIL", "PRIMARK", "H&M", "MARKS & SPENCER"), 1.2, 42.0),
    "health": ((5912,), ("BOOTS", "SUPERDRUG", "LLOYDS PHARMACY"), 1.0, 12.0),
    "entertainment": ((7832,), ("ODEON CINEMAS", "VUE CINEMAS"), 0.5, 19.0),
    "shopping": ((5311,), ("JOHN LEWIS", "ARGOS", "DEBENHAMS"), 1.5, 30.0),
    "cash": ((6011,), ("CASH MACHINE",), 1.2, 40.0),
    "gifts": ((5992, 5944), ("INTERFLORA", "PANDORA", "H SAMUEL"), 0.2, 40.0),
    "children": (
        (5641, 5945),
        ("MOTHERCARE", "SMYTHS TOYS", "THE ENTERTAINER", "JOJO MAMAN BEBE"),
        0.12,
        22.0,
    ),
    "diy": (
        (5200, 5211, 5251, 5231),
        ("B&Q", "WICKES", "SCREWFIX", "HOMEBASE", "DULUX DECORATOR"),
        0.3,
        24.0,
    ),
    "furniture": ((5712, 5719, 5722), ("IKEA", "DFS", "DUNELM", "CURRYS", "WAYFAIR"), 0.07, 110.0),
}
FUEL = ((5541,), ("SHELL", "BP", "ESSO", "TESCO PETROL"), 3.0, 52.0)
# Unforeseeable expenses (car repairs, vet bills) per customer per month.
SHOCKS_PER_MONTH = 0.05
# Treats people cut first when their balance is below zero.
TREATS = frozenset({"eating_out", "clothing", "entertainment", "shopping", "gifts"})


@dataclass(frozen=True, slots=True)
class PlantedEvent:
    """One planted event: what, when, and a description that never reaches a transaction."""

    kind: str
    day: date
    detail: str


@dataclass(frozen=True, slots=True)
class SimulatedCustomer:
    """One simulated account: its transactions in date order and its ground truth."""

    ident: str
    currency: str
    opening_balance: Decimal
    transactions: tuple[Transaction, ...]
    events: tuple[PlantedEvent, ...]
    paydays: tuple[date, ...]


@dataclass
class _Stream:
    """A regular payment: who, how much (signed), on which days, how it is booked."""

    counterparty: str
    amount: Decimal
    days: list[int]
    mcc: int | None = None
    code: str | None = None
    salary: bool = False


@dataclass
class _Plan:
    """Everything planned for one customer before the day-by-day run."""

    streams: list[_Stream] = field(default_factory=list)
    # (day, signed amount, counterparty, MCC, bank code)
    one_offs: list[tuple[int, Decimal, str, int | None, str | None]] = field(default_factory=list)
    # (category, first day, last day, factor): spending rate multipliers over day ranges
    boosts: list[tuple[str, int, int, float]] = field(default_factory=list)
    events: list[PlantedEvent] = field(default_factory=list)


def _money(value: float) -> Decimal:
    return Decimal(repr(round(value, 2))).quantize(CENT)


def _person(rng: random.Random, used: set[str]) -> str:
    while True:
        name = "%s %s" % (rng.choice(FIRST), rng.choice(LAST))
        if name not in used:
            used.add(name)
            return name


def _other(rng: random.Random, names: tuple[str, ...], old: str) -> str:
    return rng.choice([n for n in names if n != old])


def _monthly_days(start: int, end: int, day_of_month: int, days: int, earlier: bool) -> list[int]:
    """Day indices of a monthly payment on ``day_of_month``, moved off weekends."""
    out = []
    first = START + timedelta(days=max(start, 0))
    year, month = first.year, first.month
    while True:
        try:
            when = date(year, month, day_of_month)
        except ValueError:
            when = date(year, month, 28)
        while when.weekday() >= 5:
            when += timedelta(days=-1 if earlier else 1)
        index = (when - START).days
        if index > min(end, days - 1):
            break
        if index >= start:
            out.append(index)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def _every(start: int, end: int, period: int, days: int) -> list[int]:
    return list(range(max(start, 0), min(end, days - 1) + 1, period))


def _salary(
    rng: random.Random,
    plan: _Plan,
    days: int,
    employer: str,
    amount: float,
    start: int,
    end: int,
    cadence: str,
    payday: int,
    code: str,
) -> None:
    """Plan salary payments from ``start`` to ``end`` with small noise and yearly rises."""
    if cadence == "monthly":
        when = _monthly_days(start, end, payday, days, earlier=True)
    elif cadence == "four-weekly":
        when = _every(start + (payday - start) % 28, end, 28, days)
    else:
        when = _every(start + (payday - start) % 7, end, 7, days)
    jitter = rng.random() < 0.4
    for day in when:
        pay = amount * (rng.uniform(0.985, 1.015) if jitter else 1.0)
        plan.streams.append(_Stream(employer, _money(pay), [day], None, code, salary=True))


def _plan_customer(rng: random.Random, days: int) -> tuple[_Plan, Decimal, Decimal, bool]:
    """Plan one customer: the plan, the monthly everyday budget, the opening balance and
    whether they drive."""
    plan = _Plan()
    used: set[str] = set()
    salary = min(max(rng.lognormvariate(7.85, 0.35), 1200.0), 9000.0)
    cadence = rng.choices(["monthly", "four-weekly", "weekly"], [0.75, 0.15, 0.10])[0]
    payday = rng.choice([25, 28, 1, 15, 20, 27]) if cadence == "monthly" else rng.randrange(28)
    code = SALARY_CODE if rng.random() < 0.5 else CREDIT_CODE
    per_pay = (
        salary if cadence == "monthly" else salary * (28 if cadence == "four-weekly" else 7) / 30.44
    )
    employer = rng.choice(EMPLOYERS)
    stretched = rng.random() < 0.15
    saving = rng.uniform(-0.03, 0.04) if stretched else rng.uniform(0.03, 0.25)
    opening = _money(rng.uniform(0, 350) if stretched else rng.uniform(0.3, 3.0) * salary)

    # Job change or pay change, else a small yearly rise at a random month.
    segments = [(0, days - 1, employer, per_pay)]
    if rng.random() < 0.22:
        when = rng.randint(EVENT_FIRST_DAY, EVENT_LAST_DAY)
        if rng.random() < 0.7:
            new = _other(rng, EMPLOYERS, employer)
            gap = 30 if rng.random() < 0.25 else 0
            factor = rng.uniform(0.85, 1.4)
            segments = [
                (0, when - 1, employer, per_pay),
                (when + gap, days - 1, new, per_pay * factor),
            ]
            detail = "from %s to %s, pay x%.2f" % (employer, new, factor)
        else:
            factor = rng.uniform(1.08, 1.3) if rng.random() < 0.8 else rng.uniform(0.75, 0.92)
            segments = [
                (0, when - 1, employer, per_pay),
                (when, days - 1, employer, per_pay * factor),
            ]
            detail = "%s pay x%.2f" % (employer, factor)
        plan.events.append(PlantedEvent("job_change", START + timedelta(days=when), detail))
    elif rng.random() < 0.6:
        when = rng.randint(30, days - 30)
        rise = rng.uniform(1.01, 1.04)
        segments = [(0, when - 1, employer, per_pay), (when, days - 1, employer, per_pay * rise)]
    for first, last, payer, amount in segments:
        _salary(rng, plan, days, payer, amount, first, last, cadence, payday, code)
    if rng.random() < 0.35:
        paid = rng.choice([s for s in plan.streams if s.salary])
        plan.one_offs.append(
            (
                paid.days[0],
                _money(per_pay * rng.uniform(0.1, 1.0)),
                paid.counterparty,
                None,
                CREDIT_CODE,
            )
        )

    # Housing.
    renter = rng.random() < 0.6
    housing_day = rng.randint(1, 5)
    if renter:
        housing = (
            rng.choice(LETTING) if rng.random() < 0.6 else _person(rng, used),
            salary * rng.uniform(0.25, 0.4),
            STANDING_ORDER,
        )
    else:
        housing = (rng.choice(LENDERS), salary * rng.uniform(0.15, 0.33), DIRECT_DEBIT)

    bills = {
        "energy": (rng.choice(ENERGY), rng.uniform(60, 180), 4900),
        "water": (rng.choice(WATER), rng.uniform(25, 50), 4900),
        "council": (rng.choice(COUNCILS), rng.uniform(100, 220), 9311),
        "broadband": (rng.choice(BROADBAND), rng.uniform(25, 50), 4814),
        "mobile": (rng.choice(MOBILE), rng.uniform(10, 40), 4814),
    }
    for name, mcc in rng.sample(STREAMING, rng.randint(0, 3)):
        bills[name] = (name, rng.choice([5.99, 7.99, 10.99, 12.99]), mcc)
    if rng.random() < 0.4:
        bills["gym"] = (rng.choice(GYMS), rng.uniform(20, 60), 7997)
    if rng.random() < 0.5:
        bills["insurance"] = (rng.choice(INSURERS), rng.uniform(15, 60), 6300)
    bill_days = {name: rng.randint(1, 28) for name in bills}

    # Each regular payment as segments (first day, last day, payee, amount): events split them.
    housing_segments = [(0, days - 1, housing[0], housing[1], housing[2])]
    bill_segments = {name: [(0, days - 1, b[0], b[1], b[2])] for name, b in bills.items()}

    def switch(name: str, when: int, payee: str, amount: float) -> None:
        first, _, old, old_amount, mcc = bill_segments[name][-1]
        bill_segments[name][-1] = (first, when - 1, old, old_amount, mcc)
        bill_segments[name].append((when, days - 1, payee, amount, mcc))

    def move(when: int, why: str) -> None:
        nonlocal housing_segments
        first, _, old, amount, kind = housing_segments[-1]
        if kind == STANDING_ORDER or rng.random() < 0.5:
            if rng.random() < 0.85:
                payee, kind = (
                    (rng.choice(LETTING) if rng.random() < 0.6 else _person(rng, used)),
                    STANDING_ORDER,
                )
            else:
                payee, kind = rng.choice(LENDERS), DIRECT_DEBIT
            new_amount = amount * rng.uniform(0.85, 1.35)
        else:
            payee, new_amount = old, amount * rng.uniform(1.1, 1.5)
        housing_segments[-1] = (first, when - 1, old, amount, kind)
        housing_segments.append((when, days - 1, payee, new_amount, kind))
        if rng.random() < 0.65:
            plan.one_offs.append(
                (
                    when - rng.randint(0, 10),
                    -_money(rng.uniform(300, 1500)),
                    "PICKFORDS REMOVALS" if rng.random() < 0.5 else "BRITANNIA MOVERS",
                    4214,
                    CARD,
                )
            )
        elif rng.random() < 0.5:
            plan.one_offs.append(
                (
                    when - rng.randint(0, 5),
                    -_money(rng.uniform(60, 150)),
                    "ENTERPRISE VAN HIRE",
                    7513,
                    CARD,
                )
            )
        plan.boosts.append(("diy", when, when + 60, 6.0))
        plan.boosts.append(("furniture", when - 10, when + 90, 9.0))
        for name, probability, names in (
            ("energy", 0.6, ENERGY),
            ("water", 0.6, WATER),
            ("council", 0.85, COUNCILS),
            ("broadband", 0.5, BROADBAND),
        ):
            if rng.random() < probability:
                switch(
                    name,
                    when + rng.randint(3, 25),
                    _other(rng, names, bill_segments[name][-1][2]),
                    bills[name][1] * rng.uniform(0.8, 1.3),
                )
        plan.events.append(PlantedEvent("moving_house", START + timedelta(days=when), why))

    # Partner at the start, and relationship events.
    partner: tuple[str, float, bool] | None = None
    if rng.random() < 0.25:
        partner = (_person(rng, used), rng.uniform(150, 900), rng.random() < 0.6)
    partner_segments: list[tuple[int, int, str, float, bool]] = []
    if partner is not None:
        end = days - 1
        if rng.random() < 0.25:
            end = rng.randint(EVENT_FIRST_DAY, EVENT_LAST_DAY)
            plan.boosts.append(("eating_out", end, days - 1, 0.55))
            plan.boosts.append(("groceries", end, days - 1, 0.8))
            plan.events.append(
                PlantedEvent(
                    "relationship", START + timedelta(days=end), "end with %s" % partner[0]
                )
            )
            if rng.random() < 0.4:
                move(
                    min(end + rng.randint(10, 60), EVENT_LAST_DAY),
                    "after the end of a relationship",
                )
        partner_segments.append((rng.randint(0, 27), end, partner[0], partner[1], partner[2]))
    elif rng.random() < 0.1:
        when = rng.randint(EVENT_FIRST_DAY, EVENT_LAST_DAY)
        name = _person(rng, used)
        partner_segments.append(
            (when + rng.randint(0, 30), days - 1, name, rng.uniform(150, 900), rng.random() < 0.6)
        )
        plan.boosts.append(("eating_out", when, days - 1, 1.7))
        plan.boosts.append(("groceries", when, days - 1, 1.2))
        plan.boosts.append(("gifts", when - 30, when + 60, 4.0))
        plan.events.append(
            PlantedEvent("relationship", START + timedelta(days=when), "start with %s" % name)
        )
        if rng.random() < 0.35:
            move(min(when + rng.randint(30, 100), EVENT_LAST_DAY), "moving in together")
    if not any(e.kind == "moving_house" for e in plan.events) and rng.random() < 0.2:
        move(rng.randint(EVENT_FIRST_DAY, EVENT_LAST_DAY), "a new home")

    # Children.
    existing_children = rng.random() < 0.3
    benefit = 102.40 if existing_children else 0.0
    benefit_segments: list[tuple[int, int, float]] = []
    if existing_children:
        plan.boosts.append(("children", 0, days - 1, 12.0))
        if rng.random() < 0.3:
            bills["childcare"] = ("LITTLE ACORNS NURSERY", rng.uniform(400, 1000), 8351)
            bill_segments["childcare"] = [
                (0, days - 1, "LITTLE ACORNS NURSERY", bills["childcare"][1], 8351)
            ]
    if rng.random() < 0.12:
        birth = rng.randint(EVENT_FIRST_DAY, EVENT_LAST_DAY)
        # A baby is bought for on top of what older children need (nappies, clothes, a
        # sling): the rates add up rather than taking the larger.
        older = 12.0 if existing_children else 0.0
        plan.boosts.append(("children", birth - 90, birth - 1, older + 10.0))
        plan.boosts.append(("children", birth, days - 1, older + 25.0))
        if rng.random() < 0.7:  # a pram, a cot or a car seat
            store = rng.choice(("MOTHERCARE", "JOJO MAMAN BEBE", "SMYTHS TOYS"))
            plan.one_offs.append(
                (birth - rng.randint(5, 60), -_money(rng.uniform(150, 600)), store, 5641, CARD)
            )
        plan.boosts.append(("furniture", birth - 60, birth - 1, 3.0))
        plan.boosts.append(("health", birth, days - 1, 2.0))
        plan.boosts.append(("groceries", birth, days - 1, 1.15))
        plan.boosts.append(("eating_out", birth, days - 1, 0.6))
        if rng.random() < 0.8:
            claimed = birth + rng.randint(21, 70)
            if benefit:
                benefit_segments.append((0, claimed - 1, benefit))
                benefit_segments.append((claimed, days - 1, benefit + 67.80))
            else:
                benefit_segments.append((claimed, days - 1, 102.40))
            benefit = 0.0
        if rng.random() < 0.3:
            start_care = birth + rng.randint(120, 200)
            bill_segments["childcare-new"] = [
                (start_care, days - 1, "LITTLE ACORNS NURSERY", rng.uniform(400, 1000), 8351)
            ]
        plan.events.append(PlantedEvent("new_child", START + timedelta(days=birth), "birth"))
    if benefit:
        benefit_segments.append((0, days - 1, benefit))
    benefit_phase = rng.randrange(28)
    for first, last, amount in benefit_segments:
        for day in _every(first + (benefit_phase - first) % 28, last, 28, days):
            plan.streams.append(
                _Stream("HMRC CHILD BENEFIT", _money(amount), [day], None, CREDIT_CODE)
            )

    # Confounders.
    if rng.random() < 0.08:
        when = rng.randint(60, days - 60)
        plan.boosts.append(("diy", when, when + 60, 6.0))
        plan.boosts.append(("furniture", when, when + 60, 6.0))
    if renter and not any(e.kind == "moving_house" for e in plan.events) and rng.random() < 0.05:
        # The flat is sold or the agent changes: a new payee for the same rent, no move.
        first, _, old, amount, kind = housing_segments[-1]
        when = rng.randint(EVENT_FIRST_DAY, EVENT_LAST_DAY)
        housing_segments[-1] = (first, when - 1, old, amount, kind)
        housing_segments.append((when, days - 1, _other(rng, LETTING, old), amount, kind))
    if rng.random() < 0.2:
        name, names = rng.choice((("energy", ENERGY), ("broadband", BROADBAND), ("mobile", MOBILE)))
        switch(
            name,
            rng.randint(60, days - 30),
            _other(rng, names, bill_segments[name][-1][2]),
            bills[name][1] * rng.uniform(0.8, 1.2),
        )
    if rng.random() < 0.12:
        first = rng.randint(0, days - 90)
        partner_like = (
            first,
            min(days - 1, first + rng.randint(90, 400)),
            _person(rng, used),
            rng.uniform(20, 120),
            False,
        )
        partner_segments.append(partner_like)
    if rng.random() < 0.08:
        first = rng.randint(30, days - 150)
        lender = _person(rng, used)
        for k in range(rng.randint(3, 5)):
            plan.streams.append(
                _Stream(lender, _money(rng.uniform(50, 300)), [first + 30 * k], None, CREDIT_CODE)
            )
    if rng.random() < 0.5:
        plan.boosts.append(("children", 320, 355, 4.0))  # Christmas presents at toy shops

    # Turn segments into streams.
    for first, last, payee, amount, kind in housing_segments:
        when = _monthly_days(first, last, housing_day, days, earlier=False)
        plan.streams.append(
            _Stream(
                payee,
                _money(-amount),
                when,
                6513
                if kind == STANDING_ORDER and payee in LETTING and rng.random() < 0.3
                else None,
                kind,
            )
        )
    for name, segments in bill_segments.items():
        for first, last, payee, amount, mcc in segments:
            when = _monthly_days(first, last, bill_days.get(name, 15), days, earlier=False)
            plan.streams.append(_Stream(payee, _money(-amount), when, mcc, DIRECT_DEBIT))
    for first, last, name, amount, incoming in partner_segments:
        when = _monthly_days(first, last, (first % 28) + 1, days, earlier=False)
        plan.streams.append(
            _Stream(name, _money(amount if incoming else -amount), when, None, STANDING_ORDER)
        )

    fixed = sum(float(-s.amount) * len(s.days) for s in plan.streams if s.amount < 0) / (
        days / 30.44
    )
    plan_budget = max(salary * (1 - saving) - fixed, salary * 0.15)
    return plan, Decimal(repr(plan_budget)).quantize(CENT), opening, rng.random() < 0.6


def generate_customer(seed: int, index: int, days: int = 548) -> SimulatedCustomer:
    """One simulated customer, the same for the same ``seed`` and ``index``."""
    if days < EVENT_LAST_DAY + 60:
        raise AnalyticsError(
            "a simulation needs at least %d days, got %d" % (EVENT_LAST_DAY + 60, days)
        )
    rng = random.Random("bankiot-population:%d:%d" % (seed, index))
    plan, budget, opening, driver = _plan_customer(rng, days)
    spending = dict(SPENDING)
    if driver:
        spending["fuel"] = FUEL
    base = sum(visits * mean for _, _, visits, mean in spending.values())
    scale = float(budget) / base
    favourites = {c: rng.sample(m[1], min(3, len(m[1]))) for c, m in spending.items()}

    scheduled: dict[int, list[tuple[Decimal, str, int | None, str | None]]] = {}
    paydays = []
    for stream in plan.streams:
        for day in stream.days:
            scheduled.setdefault(day, []).append(
                (stream.amount, stream.counterparty, stream.mcc, stream.code)
            )
            if stream.salary:
                paydays.append(START + timedelta(days=day))
    for day, amount, counterparty, mcc, code in plan.one_offs:
        scheduled.setdefault(max(day, 0), []).append((amount, counterparty, mcc, code))

    boosts: dict[str, list[tuple[int, int, float]]] = {}
    for category, first, last, factor in plan.boosts:
        boosts.setdefault(category, []).append((first, last, factor))

    balance = opening
    out: list[Transaction] = []
    for day in range(days):
        booked = START + timedelta(days=day)
        entries = sorted(scheduled.get(day, ()), key=lambda e: (e[0] < 0, e[1]))
        if rng.random() < SHOCKS_PER_MONTH / 30.44:
            if rng.random() < 0.7:
                entries.append((-_money(rng.uniform(150, 900)), "KWIK FIT", 7538, CARD))
            else:
                entries.append((-_money(rng.uniform(80, 500)), "MEDIVET", 742, CARD))
        for category, (mccs, _, visits, mean) in spending.items():
            # Rises do not compound (a second reason to shop for children does not multiply
            # the first); falls do.
            up, down = 1.0, 1.0
            for first, last, factor in boosts.get(category, ()):
                if first <= day <= last:
                    up, down = (max(up, factor), down) if factor > 1 else (up, down * factor)
            rate = visits / 30.44 * up * down
            if category in TREATS and balance < 0:
                rate *= 0.4
            while rate > 0:
                if rng.random() < min(rate, 1.0):
                    amount = _money(mean * scale * rng.lognormvariate(-0.125, 0.5))
                    if amount > 0:
                        entries.append(
                            (-amount, rng.choice(favourites[category]), rng.choice(mccs), CARD)
                        )
                rate -= 1.0
        for amount, counterparty, mcc, code in entries:
            balance += amount
            out.append(Transaction(booked, amount, CURRENCY, counterparty, "", mcc, code, balance))
    return SimulatedCustomer(
        ident="C%d-%05d" % (seed, index),
        currency=CURRENCY,
        opening_balance=opening,
        transactions=tuple(out),
        events=tuple(sorted(plan.events, key=lambda e: e.day)),
        paydays=tuple(sorted(set(paydays))),
    )


def generate_population(seed: int, customers: int, days: int = 548) -> Iterator[SimulatedCustomer]:
    """``customers`` simulated customers of population ``seed``, one at a time."""
    for index in range(customers):
        yield generate_customer(seed, index, days)


def overdrawn_before_payday(customer: SimulatedCustomer, as_of: date) -> bool | None:
    """Ground truth for distress: does the balance fall below zero after ``as_of`` and
    before the next salary actually arrives? None when no salary follows in the data."""
    payday = next((d for d in customer.paydays if d > as_of), None)
    if payday is None:
        return None
    for tx in customer.transactions:
        if as_of < tx.booked < payday and tx.balance_after is not None and tx.balance_after < 0:
            return True
        if tx.booked >= payday:
            break
    return False
