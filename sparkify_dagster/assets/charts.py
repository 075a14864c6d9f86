"""Small PNG charts for asset metadata, embedded in markdown as base64 data URIs.

Rendered with matplotlib's Agg canvas directly (``Figure`` + ``FigureCanvasAgg``): no pyplot, no
global backend state and no display, so it is safe in any run worker or thread. The charts are
600 x 300 pixels: the Dagster UI shows them inline in the asset's materialization metadata.
"""

from __future__ import annotations

import base64
import io
import warnings
from collections.abc import Sequence

WIDTH_PX, HEIGHT_PX, DPI = 600, 300, 100
BAR_COLOR = "#4F43DD"  # Dagster's accent purple: the charts sit inside its UI
LABEL_CHARS = 32


def _short(label: object) -> str:
    text = "(unknown)" if label is None else str(label)
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"


def bar_chart(labels: Sequence[object], values: Sequence[float], *, title: str, value_label: str,
              horizontal: bool = False) -> bytes:
    """A bar chart as PNG bytes: vertical bars for a series (hours, weekdays), horizontal for a ranking.

    Horizontal bars are drawn top-down in the given order (the first label is the top bar); each bar
    carries its value. An empty series draws a "no data" chart instead of failing.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    labels = [_short(label) for label in labels]
    values = [0 if v is None else v for v in values]
    fig = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_title(title, fontsize=10, loc="left")
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(labelsize=7)
    if not labels:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="grey")
        ax.set_xticks([])
        ax.set_yticks([])
    elif horizontal:
        positions = list(range(len(labels)))
        bars = ax.barh(positions, values, color=BAR_COLOR)
        ax.set_yticks(positions, labels)
        ax.invert_yaxis()
        ax.set_xlabel(value_label, fontsize=8)
        ax.bar_label(bars, fontsize=7, padding=2)
        ax.margins(x=0.12)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    else:
        positions = list(range(len(labels)))
        bars = ax.bar(positions, values, color=BAR_COLOR)
        ax.set_xticks(positions, labels)
        ax.set_ylabel(value_label, fontsize=8)
        if len(labels) <= 12:
            ax.bar_label(bars, fontsize=7, padding=2)
        ax.margins(y=0.12)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # Titles in the logs can hold characters the bundled font lacks: drawn as boxes, not an error.
        warnings.filterwarnings("ignore", message="Glyph .* missing from")
        fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def chart_markdown(png: bytes, alt: str = "chart") -> str:
    """Markdown that shows the PNG inline (the Dagster UI renders data-URI images in md metadata)."""
    safe_alt = alt.replace("[", "(").replace("]", ")")
    return f"![{safe_alt}]({png_data_uri(png)})"
