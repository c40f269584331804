"""The dashboards' SVG charts and figures (pure): where points land, labels escaped,
empty charts say so, funnel shares, and the nearest-rank percentile."""

from __future__ import annotations

import datetime as dt
import re
import statistics
import xml.etree.ElementTree as ET

import pytest

from cloud.dashboards import charts, rates

T0 = dt.datetime(2026, 11, 29, 10, 0, tzinfo=dt.UTC)
SVG = "{http://www.w3.org/2000/svg}"


def parsed(markup: str) -> ET.Element:
    """The chart as XML (well-formed, or this fails)."""
    text = str(markup)  # a plain string: Markup.replace would escape the namespace
    return ET.fromstring(text.replace("<svg ", '<svg xmlns="http://www.w3.org/2000/svg" ', 1))


def test_a_line_chart_maps_time_and_value_onto_the_plot() -> None:
    line = charts.Series("depth", [(T0, 0.0), (T0 + dt.timedelta(minutes=30), 10.0)])
    svg = parsed(charts.line_chart("Queue depth", [line]))
    # 640 x 200: plot from x 48 to 628 (12 right margin), y 12 to 152 (one legend row).
    polyline = svg.find(SVG + "polyline")
    assert polyline is not None
    assert polyline.get("points") == "48.0,152.0 628.0,12.0"
    texts = [t.text for t in svg.iter(SVG + "text")]
    assert "10:00" in texts and "10:30" in texts and "depth" in texts
    assert svg.findtext(SVG + "title") == "Queue depth"


def test_a_flat_line_sits_in_the_middle_and_a_single_point_is_drawn() -> None:
    flat = charts.Series("t", [(T0, 5.0), (T0 + dt.timedelta(minutes=1), 5.0)])
    polyline = parsed(charts.line_chart("flat", [flat])).find(SVG + "polyline")
    assert polyline is not None
    assert {p.split(",")[1] for p in (polyline.get("points") or "").split()} == {"82.0"}
    single = parsed(charts.line_chart("one", [charts.Series("t", [(T0, 1.0)])]))
    assert single.find(SVG + "circle") is not None


def test_labels_are_escaped() -> None:
    hostile = '<script>alert("x")</script>'
    markup = charts.line_chart(hostile, [charts.Series(hostile, [(T0, 1.0)])])
    assert "<script>" not in markup
    assert "&lt;script&gt;" in markup
    parsed(markup)  # still well-formed
    columns = charts.column_chart("c", [(hostile, 1.0)])
    assert "<script>" not in columns
    funnel = charts.funnel_chart("f", [(hostile, 3)])
    assert "<script>" not in funnel


def test_empty_charts_say_so() -> None:
    for markup in (
        charts.line_chart("x", [], empty="Nothing yet"),
        charts.line_chart("x", [charts.Series("s", [])], empty="Nothing yet"),
        charts.column_chart("x", [], empty="Nothing yet"),
        charts.funnel_chart("x", [("Shown", 0)], empty="Nothing yet"),
    ):
        assert parsed(markup).findtext(SVG + "text") == "Nothing yet"


def test_columns_are_proportional_to_their_values() -> None:
    svg = parsed(charts.column_chart("rate", [("10:00", 1.0), ("10:01", 4.0), ("10:02", 2.0)]))
    heights = [float(r.get("height") or 0) for r in svg.iter(SVG + "rect")]
    # 180 high: plot from y 12 to 158, so the tallest column is 146.
    assert heights == [36.5, 146.0, 73.0]


def test_a_funnel_shows_each_stage_as_a_share_of_the_first() -> None:
    markup = charts.funnel_chart("Offers", [("Shown", 200), ("Accepted", 50)])
    texts = [t.text for t in parsed(markup).iter(SVG + "text")]
    assert "200 (100 %)" in texts and "50 (25 %)" in texts
    widths = [float(r.get("width") or 0) for r in parsed(markup).iter(SVG + "rect")]
    assert widths[1] == widths[0] / 4


def test_percentile_is_the_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]
    assert rates.percentile(values, 0.95) == 95.0
    assert rates.percentile(values, 0.5) == 50.0
    # statistics.quantiles' "inclusive" method interpolates; nearest rank stays on a value.
    assert rates.percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0
    assert rates.percentile([7.0], 0.95) == 7.0
    assert statistics.median([1.0, 2.0, 3.0]) == rates.percentile([1.0, 2.0, 3.0], 0.5)


def test_no_chart_uses_inline_styles() -> None:
    markup = charts.line_chart("x", [charts.Series("s", [(T0, 1.0), (T0, 2.0)])])
    markup += charts.column_chart("x", [("a", 1.0)]) + charts.funnel_chart("x", [("a", 1)])
    assert not re.search(r"\sstyle=", markup)  # the pages' CSP refuses them


def test_stacked_columns_put_each_kind_on_the_one_below() -> None:
    markup = charts.stacked_column_chart(
        "Life events per month",
        ["2026-10", "2026-11"],
        [("job_change", [1.0, 3.0]), ("moving", [1.0, 0.0])],
    )
    svg = parsed(markup)
    bars = [
        (r.findtext(SVG + "title"), float(r.get("y") or 0), float(r.get("height") or 0))
        for r in svg.iter(SVG + "rect")
        if r.find(SVG + "title") is not None
    ]
    # 220 high with one legend row: the plot runs from y 12 to 180 (168 high), and the
    # tallest column (3) fills it; a kind with nothing that month draws no bar.
    assert bars == [
        ("2026-10, job_change: 1", 124.0, 56.0),
        ("2026-10, moving: 1", 68.0, 56.0),
        ("2026-11, job_change: 3", 12.0, 168.0),
    ]
    texts = [t.text for t in svg.iter(SVG + "text")]
    assert {"2026-10", "2026-11", "job_change", "moving"} <= set(texts)
    assert not re.search(r"\sstyle=", markup)
    empty = charts.stacked_column_chart("x", ["2026-10"], [("a", [0.0])], empty="None yet")
    assert parsed(empty).findtext(SVG + "text") == "None yet"
    with pytest.raises(ValueError, match="series 'a' has 1 values for 2 labels"):
        charts.stacked_column_chart("x", ["2026-10", "2026-11"], [("a", [1.0])])
