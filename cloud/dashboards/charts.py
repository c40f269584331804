"""Charts as inline SVG, drawn on the server: no script, no external network. Pure.

Each function takes plain numbers and labels and returns SVG markup (``Markup``: every
label is escaped here) that a template puts straight into the page. The SVG scales with
its container (``viewBox``), carries a ``<title>`` and a ``<desc>`` for screen readers,
and uses presentation attributes only (the pages' Content-Security-Policy refuses inline
styles).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

PALETTE = ("#0b6e99", "#d9730d", "#0f7b6c", "#ad1a72", "#6940a5", "#64473a")
_FONT = 'font-family="system-ui, sans-serif" font-size="11" fill="#444"'


@dataclass(frozen=True)
class Series:
    """One line of a line chart: ``points`` are (time, value), in time order."""

    name: str
    points: Sequence[tuple[dt.datetime, float]]


def _number(value: float) -> str:
    """A short label for an axis value."""
    if abs(value) >= 1_000_000:
        return "%.1fM" % (value / 1_000_000)
    if abs(value) >= 10_000:
        return "%.0fk" % (value / 1000)
    if value == int(value):
        return "%d" % value
    return "%.2f" % value if abs(value) < 10 else "%.1f" % value


def _empty(title: str, width: int, height: int, message: str) -> Markup:
    return Markup(
        '<svg class="chart" viewBox="0 0 %d %d" role="img" aria-label="%s">'
        "<title>%s</title>"
        '<text x="%d" y="%d" text-anchor="middle" %s>%s</text></svg>'
        % (
            width,
            height,
            escape(title),
            escape(title),
            width // 2,
            height // 2,
            _FONT,
            escape(message),
        )
    )


def _range(low: float, high: float) -> tuple[float, float]:
    if high == low:  # a flat line sits in the middle
        return low - 1, high + 1
    return low, high


def line_chart(
    title: str,
    series: Sequence[Series],
    *,
    width: int = 640,
    height: int = 200,
    unit: str = "",
    empty: str = "No data yet",
) -> Markup:
    """Lines over time, one per series, on a shared time axis and value axis."""
    drawn = [s for s in series if s.points]
    if not drawn:
        return _empty(title, width, height, empty)
    left, right, top, bottom = 48, 12, 12, 34 + 14 * ((len(drawn) - 1) // 3 + 1)
    times = [t for s in drawn for t, _ in s.points]
    values = [v for s in drawn for _, v in s.points]
    t0, t1 = min(times), max(times)
    span = (t1 - t0).total_seconds() or 1.0
    low, high = _range(min(values), max(values))
    plot_w, plot_h = width - left - right, height - top - bottom

    def x(moment: dt.datetime) -> float:
        return left + plot_w * ((moment - t0).total_seconds() / span)

    def y(value: float) -> float:
        return top + plot_h * (1 - (value - low) / (high - low))

    parts = _frame(title, width, height, left, top, plot_w, plot_h)
    parts.append(_y_labels(low, high, left, top, plot_h, unit))
    parts.append(
        '<text x="%d" y="%d" %s>%s</text><text x="%d" y="%d" text-anchor="end" %s>%s</text>'
        % (
            left,
            top + plot_h + 14,
            _FONT,
            t0.strftime("%H:%M"),
            left + plot_w,
            top + plot_h + 14,
            _FONT,
            t1.strftime("%H:%M"),
        )
    )
    for index, line in enumerate(drawn):
        colour = PALETTE[index % len(PALETTE)]
        points = " ".join("%.1f,%.1f" % (x(t), y(v)) for t, v in line.points)
        parts.append(
            '<polyline points="%s" fill="none" stroke="%s" stroke-width="2">'
            "<title>%s</title></polyline>" % (points, colour, escape(line.name))
        )
        if len(line.points) == 1:
            t, v = line.points[0]
            parts.append('<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>' % (x(t), y(v), colour))
        parts.append(_legend(index, line.name, left, top + plot_h, plot_w))
    parts.append("</svg>")
    return Markup("".join(parts))


def column_chart(
    title: str,
    columns: Sequence[tuple[str, float]],
    *,
    width: int = 640,
    height: int = 180,
    unit: str = "",
    empty: str = "No data yet",
) -> Markup:
    """One column per (label, value), left to right: a count per time bucket, say. The
    first, middle and last labels are written under the axis."""
    if not columns:
        return _empty(title, width, height, empty)
    left, right, top, bottom = 48, 12, 12, 22
    plot_w, plot_h = width - left - right, height - top - bottom
    high = max(max(v for _, v in columns), 1.0)
    step = plot_w / len(columns)
    parts = _frame(title, width, height, left, top, plot_w, plot_h)
    parts.append(_y_labels(0.0, high, left, top, plot_h, unit))
    for index, (label, value) in enumerate(columns):
        bar = plot_h * value / high
        parts.append(
            '<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s">'
            "<title>%s: %s</title></rect>"
            % (
                left + index * step + step * 0.1,
                top + plot_h - bar,
                max(step * 0.8, 1.0),
                bar,
                PALETTE[0],
                escape(label),
                _number(value),
            )
        )
    for index in sorted({0, len(columns) // 2, len(columns) - 1}):
        anchor = "start" if index == 0 else "end" if index == len(columns) - 1 else "middle"
        parts.append(
            '<text x="%.1f" y="%d" text-anchor="%s" %s>%s</text>'
            % (
                left + index * step + step / 2,
                top + plot_h + 14,
                anchor,
                _FONT,
                escape(columns[index][0]),
            )
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def stacked_column_chart(
    title: str,
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
    *,
    width: int = 640,
    height: int = 220,
    unit: str = "",
    empty: str = "No data yet",
) -> Markup:
    """One column per label, stacked from the series' values at that label (each series
    one colour, named in a legend under the axis): a count per month and kind, say. Every
    series has one value per label. Up to 12 labels are all written under the axis; more,
    the first, middle and last."""
    for name, values in series:
        if len(values) != len(labels):
            raise ValueError(
                "series %r has %d values for %d labels" % (name, len(values), len(labels))
            )
    totals = [sum(values[i] for _, values in series) for i in range(len(labels))]
    if not any(totals):
        return _empty(title, width, height, empty)
    legend_rows = (len(series) - 1) // 3 + 1
    left, right, top, bottom = 48, 12, 12, 26 + 14 * legend_rows
    plot_w, plot_h = width - left - right, height - top - bottom
    high = max(max(totals), 1.0)
    step = plot_w / len(labels)
    parts = _frame(title, width, height, left, top, plot_w, plot_h)
    parts.append(_y_labels(0.0, high, left, top, plot_h, unit))
    for index, label in enumerate(labels):
        base = float(top + plot_h)
        for number, (name, values) in enumerate(series):
            value = values[index]
            if value <= 0:
                continue
            bar = plot_h * value / high
            base -= bar
            parts.append(
                '<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s">'
                "<title>%s, %s: %s</title></rect>"
                % (
                    left + index * step + step * 0.1,
                    base,
                    max(step * 0.8, 1.0),
                    bar,
                    PALETTE[number % len(PALETTE)],
                    escape(label),
                    escape(name),
                    _number(value),
                )
            )
    shown = range(len(labels)) if len(labels) <= 12 else {0, len(labels) // 2, len(labels) - 1}
    for index in sorted(shown):
        parts.append(
            '<text x="%.1f" y="%d" text-anchor="middle" %s>%s</text>'
            % (left + index * step + step / 2, top + plot_h + 14, _FONT, escape(labels[index]))
        )
    for number, (name, _values) in enumerate(series):
        parts.append(_legend(number, name, left, top + plot_h, plot_w))
    parts.append("</svg>")
    return Markup("".join(parts))


def funnel_chart(
    title: str,
    stages: Sequence[tuple[str, int]],
    *,
    width: int = 640,
    empty: str = "No data yet",
) -> Markup:
    """A funnel: one horizontal bar per stage, each with its count and its share of the
    first stage (shown, accepted, declined...)."""
    row = 30
    height = 12 + row * max(len(stages), 1)
    if not stages or stages[0][1] <= 0:
        return _empty(title, width, height + 20, empty)
    first = stages[0][1]
    label_w, plot_w = 120, width - 120 - 110
    parts = [_open(title, width, height)]
    for index, (label, count) in enumerate(stages):
        y = 6 + index * row
        bar = plot_w * min(count / first, 1.0)
        parts.append(
            '<text x="%d" y="%d" text-anchor="end" %s>%s</text>'
            '<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"><title>%s: %d</title></rect>'
            '<text x="%.1f" y="%d" %s>%d (%.0f %%)</text>'
            % (
                label_w - 6,
                y + 16,
                _FONT,
                escape(label),
                label_w,
                y + 2,
                max(bar, 1.0),
                row - 8,
                PALETTE[index % len(PALETTE)],
                escape(label),
                count,
                label_w + max(bar, 1.0) + 6,
                y + 16,
                _FONT,
                count,
                100.0 * count / first,
            )
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _legend(index: int, name: str, left: int, bottom: int, plot_w: int) -> str:
    """The legend entry of series ``index`` (its colour and name), three to a row under a
    plot whose axis is at ``bottom``."""
    row, column = divmod(index, 3)
    lx, ly = left + column * (plot_w // 3), bottom + 30 + row * 14
    return (
        '<rect x="%d" y="%d" width="10" height="10" fill="%s"/>'
        '<text x="%d" y="%d" %s>%s</text>'
        % (lx, ly - 9, PALETTE[index % len(PALETTE)], lx + 14, ly, _FONT, escape(name[:40]))
    )


def _open(title: str, width: int, height: int) -> str:
    return '<svg class="chart" viewBox="0 0 %d %d" role="img" aria-label="%s"><title>%s</title>' % (
        width,
        height,
        escape(title),
        escape(title),
    )


def _frame(
    title: str, width: int, height: int, left: int, top: int, plot_w: int, plot_h: int
) -> list[str]:
    return [
        _open(title, width, height),
        '<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#999"/>'
        % (left, top + plot_h, left + plot_w, top + plot_h),
        '<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#999"/>' % (left, top, left, top + plot_h),
    ]


def _y_labels(low: float, high: float, left: int, top: int, plot_h: int, unit: str) -> str:
    suffix = " %s" % unit if unit else ""
    return (
        '<text x="%d" y="%d" text-anchor="end" %s>%s</text>'
        '<text x="%d" y="%d" text-anchor="end" %s>%s</text>'
        % (
            left - 4,
            top + 10,
            _FONT,
            escape(_number(high) + suffix),
            left - 4,
            top + plot_h,
            _FONT,
            escape(_number(low) + suffix),
        )
    )
