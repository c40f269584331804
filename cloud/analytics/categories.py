"""ISO 18245 merchant category codes (MCC) to spending categories.

Source: the code assignments of ISO 18245:2023 "Retail financial services - Merchant
category codes", as listed with their descriptions in the card schemes' public manuals (Visa
Merchant Data Standards Manual, Mastercard Quick Reference Booklet - Merchant Edition). The
grouping into categories is ours: a small table, one row per code range, inclusive, sorted and
non-overlapping (a test checks that). A code in no row is ``other``; a transaction without
an MCC (a transfer, a direct debit, a standing order) is ``transfers``.
"""

from __future__ import annotations

from bisect import bisect_right

from cloud.analytics.records import AnalyticsError

# (first code, last code, category, what the scheme manuals call the codes)
MCC_TABLE: tuple[tuple[int, int, str, str], ...] = (
    (3000, 3350, "travel", "airlines (named carriers)"),
    (3351, 3500, "travel", "car rental agencies (named)"),
    (3501, 3999, "travel", "lodging: hotels, motels, resorts (named)"),
    (4011, 4131, "transport", "railroads, local commuter transport, taxicabs, bus lines"),
    (4214, 4214, "removals", "motor freight carriers, moving and storage companies"),
    (4225, 4225, "removals", "public warehousing and storage"),
    (4411, 4722, "travel", "cruise lines, airlines, airports, travel agencies"),
    (4784, 4789, "transport", "tolls and bridge fees, transportation services"),
    (4812, 4816, "telecom", "telecommunication equipment and services, network services"),
    (4899, 4899, "subscriptions", "cable, satellite and other pay television and radio"),
    (4900, 4900, "utilities", "utilities: electric, gas, water, sanitary"),
    (5200, 5200, "diy", "home supply warehouse stores"),
    (5211, 5261, "diy", "building materials, glass and paint, hardware, garden supply"),
    (5300, 5311, "shopping", "wholesale clubs, discount and department stores"),
    (5411, 5499, "groceries", "grocery stores, supermarkets, bakeries, food stores"),
    (5511, 5599, "motoring", "car dealers, service stations, automotive"),
    (5611, 5640, "clothing", "men's, women's clothing and accessories"),
    (5641, 5641, "children", "children's and infants' wear stores"),
    (5651, 5699, "clothing", "family clothing, shoes, sports apparel"),
    (5712, 5722, "furniture", "furniture, floor coverings, drapery, household appliances"),
    (5732, 5735, "electronics", "electronics, music, computer software, record stores"),
    (5811, 5814, "eating_out", "caterers, restaurants, bars, fast food"),
    (5815, 5818, "subscriptions", "digital goods: media, games, applications"),
    (5912, 5912, "health", "drug stores and pharmacies"),
    (5944, 5944, "gifts", "jewelry, watch, clock and silverware stores"),
    (5945, 5945, "children", "hobby, toy and game shops"),
    (5992, 5992, "gifts", "florists"),
    (6010, 6011, "cash", "manual and automated cash disbursements"),
    (6300, 6300, "insurance", "insurance sales, underwriting and premiums"),
    (6513, 6513, "housing", "real estate agents and managers: rentals"),
    (7011, 7011, "travel", "lodging: hotels, motels, resorts"),
    (7512, 7512, "transport", "automobile rental agency"),
    (7513, 7513, "removals", "truck and utility trailer rentals"),
    (7832, 7841, "entertainment", "motion picture theaters, video rental"),
    (7997, 7997, "leisure", "membership clubs: sports, recreation, athletic"),
    (8011, 8099, "health", "doctors, dentists, hospitals, medical services"),
    (8211, 8299, "education", "schools, colleges, educational services"),
    (8351, 8351, "childcare", "child care services"),
    (9211, 9399, "taxes", "government services: courts, fines, tax payments"),
)

_FIRSTS = tuple(row[0] for row in MCC_TABLE)

TRANSFERS = "transfers"
OTHER = "other"
# Categories of regular bills: what a new home sets up.
BILL_CATEGORIES = frozenset({"utilities", "telecom", "taxes", "insurance", "subscriptions"})


def category_of(mcc: int | None) -> str:
    """The spending category of an ISO 18245 code (``transfers`` for None)."""
    if mcc is None:
        return TRANSFERS
    if isinstance(mcc, bool) or not isinstance(mcc, int) or not 0 <= mcc <= 9999:
        raise AnalyticsError("MCC must be an integer 0..9999, got %r" % (mcc,))
    index = bisect_right(_FIRSTS, mcc) - 1
    if index >= 0 and mcc <= MCC_TABLE[index][1]:
        return MCC_TABLE[index][2]
    return OTHER
