"""ISO 18245 codes to categories."""

from __future__ import annotations

from itertools import pairwise

import pytest

from cloud.analytics.categories import MCC_TABLE, category_of
from cloud.analytics.records import AnalyticsError


def test_table_is_sorted_and_ranges_do_not_overlap():
    for (_, last, _, _), (first, _, _, _) in pairwise(MCC_TABLE):
        assert last < first
    assert all(first <= last for first, last, _, _ in MCC_TABLE)


@pytest.mark.parametrize(
    ("mcc", "category"),
    [
        (5411, "groceries"),  # grocery stores, supermarkets
        (4214, "removals"),  # motor freight carriers, moving and storage
        (7513, "removals"),  # truck and utility trailer rentals
        (5641, "children"),  # children's and infants' wear
        (8351, "childcare"),  # child care services
        (4900, "utilities"),
        (5812, "eating_out"),
        (5712, "furniture"),
        (5251, "diy"),  # hardware stores
        (3000, "travel"),  # first named airline
        (3999, "travel"),  # last named lodging
        (7538, "other"),  # automotive service shops: not in the table
        (None, "transfers"),
    ],
)
def test_known_codes(mcc, category):
    assert category_of(mcc) == category


@pytest.mark.parametrize("bad", [-1, 10000, True, "5411"])
def test_bad_codes_raise(bad):
    with pytest.raises(AnalyticsError, match="MCC"):
        category_of(bad)
