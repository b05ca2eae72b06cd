"""Run in every python kernel at start (kernel_init.py): the result formats the E2B SDKs
read beyond Jupyter's own (spec/e2b-protocol.md 5.3). It runs in a namespace of its own, so
that none of its names appear in the user's.

Kept cheap, since it is part of every kernel start: pandas and matplotlib are never imported
here; the formatters look for them in sys.modules, as only a user who imported them can
have a DataFrame or a Figure.
"""

import json
import math
import sys

from IPython import get_ipython
from IPython.core.formatters import BaseFormatter, JSONFormatter
from traitlets import ObjectName, Unicode

HERE = "/opt/cove/code-interpreter"


def _clean(value):
    """JSON-ready: NaN and the infinities as None, timestamps as ISO strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _clean(value.item())
    return value


class DataFormatter(BaseFormatter):
    """`e2b/data`: a DataFrame as {column: [values]} (E2B's `result.data`)."""

    format_type = Unicode("e2b/data")
    print_method = ObjectName("_repr_e2b_data_")
    _return_type = (dict, str)

    def __call__(self, obj):
        pandas = sys.modules.get("pandas")
        if pandas is None or not isinstance(obj, pandas.DataFrame):
            return super().__call__(obj)
        return {str(col): [_clean(v) for v in values] for col, values in obj.to_dict(orient="list").items()}


class ChartFormatter(BaseFormatter):
    """`e2b/chart`: what a matplotlib Figure shows, as data (charts.py)."""

    format_type = Unicode("e2b/chart")
    print_method = ObjectName("_repr_e2b_chart_")
    _return_type = (dict, str)

    def __call__(self, obj):
        if "matplotlib" not in sys.modules:
            return super().__call__(obj)
        from matplotlib.figure import Figure

        if not isinstance(obj, Figure):
            return super().__call__(obj)
        try:
            return _charts().figure_to_dict(obj)
        except Exception:  # a chart we cannot read still has its PNG
            return None


class ListJSONFormatter(JSONFormatter):
    """`application/json` also for plain lists and dicts, as E2B's template does."""

    def __call__(self, obj):
        if isinstance(obj, (list, dict)):
            try:
                return json.loads(json.dumps(obj, allow_nan=False, default=_clean))
            except (TypeError, ValueError):
                pass
        return super().__call__(obj)


_charts_module = None


def _charts():
    global _charts_module
    if _charts_module is None:
        import importlib.util

        spec = importlib.util.spec_from_file_location("cove_charts", f"{HERE}/charts.py")
        _charts_module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(_charts_module)
    return _charts_module


def _install():
    ip = get_ipython()
    if ip is None:
        return
    formatters = ip.display_formatter.formatters
    formatters["e2b/data"] = DataFormatter(parent=ip.display_formatter)
    formatters["e2b/chart"] = ChartFormatter(parent=ip.display_formatter)
    formatters["application/json"] = ListJSONFormatter(parent=ip.display_formatter)

    # PIL: show() would look for an image viewer program; in a kernel the image is displayed
    # instead, and so is an image saved to a file (E2B's template does both).
    from IPython.display import display
    from PIL import Image, ImageShow

    ImageShow.UnixViewer.show_file = lambda self, path, **options: 0
    original_save = Image.Image.save

    def save(self, fp, format=None, **params):
        if isinstance(fp, str):
            display(self)
        return original_save(self, fp, format, **params)

    Image.Image.save = save


_install()
