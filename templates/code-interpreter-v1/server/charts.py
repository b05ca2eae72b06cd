"""e2b/chart: what a matplotlib Figure shows, as data (spec/e2b-protocol.md 5.3, the shapes
of the SDK's charts.ts).

Loaded by startup.py's formatter when a Figure is displayed, so only by users who imported
matplotlib. One Axes gives one chart; several give a `superchart` of them. A chart is read
from the artists matplotlib keeps on the Axes:
- pie: Wedge patches (ax.pie);
- bar: BarContainers (ax.bar, ax.barh);
- box_and_whisker: the lines ax.boxplot draws, two vertical whiskers per box;
- line: Line2D data lines; scatter: PathCollections (ax.scatter);
- anything else: `unknown`, with its title and no elements.
"""

import math
import re

import matplotlib.dates as mdates
from matplotlib.collections import PathCollection
from matplotlib.container import BarContainer
from matplotlib.lines import Line2D
from matplotlib.patches import PathPatch, Wedge

_UNIT = re.compile(r"\(([^()]*)\)\s*$")


def figure_to_dict(figure):
    axes = [ax for ax in figure.get_axes() if ax.get_visible()]
    if not axes or not any(ax.has_data() for ax in axes):
        return None
    if len(axes) == 1:
        return axes_chart(axes[0])
    suptitle = figure._suptitle.get_text() if figure._suptitle is not None else ""
    return {"type": "superchart", "title": suptitle or None, "elements": [axes_chart(ax) for ax in axes]}


def axes_chart(ax):
    title = ax.get_title() or None
    wedges = [p for p in ax.patches if isinstance(p, Wedge)]
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    lines = [line for line in ax.get_lines() if line.get_visible()]
    dots = [c for c in ax.collections if isinstance(c, PathCollection)]
    if wedges:
        return {"type": "pie", "title": title, "elements": [_wedge(w) for w in wedges]}
    if bars:
        return {"type": "bar", "title": title, **_labels(ax), "elements": _bars(ax, bars)}
    boxes = _boxes(ax, lines)
    if boxes is not None:
        return {"type": "box_and_whisker", "title": title, **_labels(ax), "elements": boxes}
    if lines and not dots:
        elements = [_series(ax, line.get_label(), line.get_xydata()) for line in lines]
        return {"type": "line", "title": title, **_labels(ax), **_ticks(ax), "elements": elements}
    if dots and not lines:
        elements = [_series(ax, c.get_label(), c.get_offsets()) for c in dots]
        return {"type": "scatter", "title": title, **_labels(ax), **_ticks(ax), "elements": elements}
    return {"type": "unknown", "title": title, "elements": []}


def _number(value):
    value = float(value)
    return value if math.isfinite(value) else None


def _label(text):
    # matplotlib names unlabelled artists `_child0`, `_nolegend_`...: not a user's label.
    return "" if not text or text.startswith("_") else text


def _labels(ax):
    out = {}
    for name, text in (("x", ax.get_xlabel()), ("y", ax.get_ylabel())):
        unit = _UNIT.search(text)
        out[f"{name}_label"] = text or None
        out[f"{name}_unit"] = unit.group(1).strip() if unit else None
    return out


def _scale(axis):
    scale = axis.get_scale()
    if scale != "linear":
        return scale
    module = type(axis.converter).__module__ if axis.converter is not None else ""
    if module == "matplotlib.dates":
        return "datetime"
    if module == "matplotlib.category":
        return "categorical"
    return "linear"


def _categories(axis):
    units = axis.get_units()
    mapping = getattr(units, "_mapping", None)
    return {index: str(name) for name, index in mapping.items()} if mapping else {}


def _value_on(axis, scale, categories):
    """Turns a position on the axis back into the user's value: a date, a category, a number."""
    if scale == "datetime":
        return lambda v: mdates.num2date(float(v)).isoformat()
    if scale == "categorical":
        return lambda v: categories.get(int(round(float(v))), str(v))
    return _number


def _ticks(ax):
    out = {}
    for name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
        scale = _scale(axis)
        low, high = sorted(axis.get_view_interval())
        locs = [t for t in axis.get_majorticklocs() if low - 1e-9 * abs(low) <= t <= high + 1e-9 * abs(high)]
        # The formatter gives the labels a drawn figure would show, without drawing it.
        labels = axis.get_major_formatter().format_ticks(locs) if locs else []
        as_value = _value_on(axis, scale, _categories(axis))
        # Tick positions come out of float steps (0.30000000000000004): 12 digits are plenty.
        out[f"{name}_ticks"] = [as_value(float(f"{t:.12g}")) for t in locs]
        out[f"{name}_scale"] = scale
        out[f"{name}_tick_labels"] = [str(label) for label in labels]
    return out


def _series(ax, label, xy):
    to_x = _value_on(ax.xaxis, _scale(ax.xaxis), _categories(ax.xaxis))
    to_y = _value_on(ax.yaxis, _scale(ax.yaxis), _categories(ax.yaxis))
    return {"label": _label(label), "points": [[to_x(x), to_y(y)] for x, y in xy]}


def _wedge(wedge):
    return {
        "label": _label(wedge.get_label()),
        # Wedge angles are computed in float32: 90% of a pie is 323.99999 without rounding.
        "angle": round(abs(wedge.theta2 - wedge.theta1), 3),
        "radius": _number(wedge.r),
    }


def _tick_names(axis):
    """Tick position -> the label shown there (categories, or labels the user set)."""
    locs = list(axis.get_majorticklocs())
    labels = axis.get_major_formatter().format_ticks(locs) if locs else []
    return {round(float(loc), 6): str(label) for loc, label in zip(locs, labels)}


def _bars(ax, containers):
    elements = []
    for container in containers:
        horizontal = getattr(container, "orientation", "vertical") == "horizontal"
        axis = ax.yaxis if horizontal else ax.xaxis
        names = _tick_names(axis)
        values = getattr(container, "datavalues", None)
        for i, rect in enumerate(container.patches):
            if horizontal:
                at, size = rect.get_y() + rect.get_height() / 2, rect.get_width()
            else:
                at, size = rect.get_x() + rect.get_width() / 2, rect.get_height()
            value = values[i] if values is not None and i < len(values) else size
            elements.append(
                {
                    "label": names.get(round(float(at), 6), str(_number(at))),
                    "value": _number(value),
                    "group": _label(container.get_label()),
                }
            )
    return elements


def _boxes(ax, lines):
    """The boxes of ax.boxplot, or None when the lines are not a box plot's.

    boxplot draws, per box and in this order: the box (a closed line, or a PathPatch with
    patch_artist), two vertical whiskers (q1 to the low end, q3 to the high end), two caps,
    the median, the fliers (markers without a line)."""
    if not lines or any(not isinstance(p, PathPatch) for p in ax.patches) or ax.collections:
        return None
    whiskers, flats, fliers = [], [], []
    for line in lines:
        xy = line.get_xydata()
        if line.get_linestyle() in ("None", " ", "") and line.get_marker() not in (None, "None", ""):
            fliers.append(xy)
        elif len(xy) == 2 and xy[0][0] == xy[1][0]:
            whiskers.append(xy)
        elif len(xy) == 2 and xy[0][1] == xy[1][1]:
            flats.append(xy)
        elif len(xy) != 5:  # a box drawn as a closed line has five points
            return None
    if not whiskers or len(whiskers) % 2:
        return None
    names = _tick_names(ax.xaxis)
    boxes = []
    for low, high in zip(whiskers[::2], whiskers[1::2]):
        at = float(low[0][0])
        # The median spans the box's width; caps are narrower: the widest flat line here.
        here = [f for f in flats if min(f[0][0], f[1][0]) <= at <= max(f[0][0], f[1][0])]
        median = max(here, key=lambda f: abs(f[1][0] - f[0][0]))[0][1] if here else None
        outliers = [float(y) for xy in fliers for x, y in xy if abs(float(x) - at) < 0.5]
        boxes.append(
            {
                "label": names.get(round(at, 6), str(at)),
                "min": _number(low[1][1]),
                "first_quartile": _number(low[0][1]),
                "median": None if median is None else _number(median),
                "third_quartile": _number(high[0][1]),
                "max": _number(high[1][1]),
                "outliers": outliers,
            }
        )
    return boxes
