"""A flowing A4 page layout on matplotlib's PdfPages: headings, paragraphs, tables, plots.

Text is embedded as TrueType (``pdf.fonttype = 42``) so it stays selectable and
extractable; the file is written atomically.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from conceptlens._io import atomic_path, user_path

PAGE = (8.27, 11.69)  # A4 portrait, inches
MARGIN = 0.6  # inches
WRAP = 100  # characters per line of body text


class PageWriter:
    """Write blocks top to bottom, starting a new page when one does not fit."""

    def __init__(self, pdf: Any, footer: str) -> None:
        self._pdf = pdf
        self._footer = footer
        self._fig: Any = None
        self._y = 0.0  # cursor, inches from the top
        self.pages = 0

    # ----------------------------------------------------------------- pages
    def _new_page(self) -> None:
        from matplotlib.figure import Figure

        self.flush()
        self._fig = Figure(figsize=PAGE)
        self._y = MARGIN
        self.pages += 1
        self._fig.text(
            0.5,
            0.25 / PAGE[1],
            f"{self._footer} - page {self.pages}",
            ha="center",
            va="bottom",
            fontsize=6.5,
            color="0.4",
        )

    def flush(self) -> None:
        if self._fig is not None:
            self._pdf.savefig(self._fig)
            self._fig = None

    def _need(self, height: float) -> None:
        if self._fig is None or self._y + height > PAGE[1] - MARGIN:
            self._new_page()

    def new_page(self) -> None:
        self._new_page()

    def _text(self, s: str, size: float, **kw: Any) -> None:
        self._fig.text(
            MARGIN / PAGE[0], 1 - self._y / PAGE[1], s, va="top", ha="left", fontsize=size, **kw
        )

    # ----------------------------------------------------------------- blocks
    def title(self, text: str, subtitle: str = "") -> None:
        self._need(0.9)
        self._text(text, 16, fontweight="bold")
        self._y += 0.35
        if subtitle:
            self._text(subtitle, 8.5, color="0.3")
            self._y += 0.25
        self._y += 0.1

    def heading(self, text: str) -> None:
        self._need(0.7)  # a heading is never the last line of a page
        self._y += 0.08
        self._text(text, 11.5, fontweight="bold")
        self._y += 0.27

    def paragraph(self, text: str, size: float = 8.5, wrap: int = WRAP) -> None:
        for line in textwrap.wrap(text, wrap) or [""]:
            self._need(size / 72 * 1.45)
            self._text(line, size)
            self._y += size / 72 * 1.45
        self._y += 0.08

    def bullets(self, items: Sequence[str], size: float = 8.5) -> None:
        for item in items:
            lines = textwrap.wrap(item, WRAP - 4) or [""]
            for i, line in enumerate(lines):
                self._need(size / 72 * 1.45)
                self._text(("- " if i == 0 else "  ") + line, size)
                self._y += size / 72 * 1.45
        self._y += 0.08

    def table(
        self,
        header: Sequence[str],
        rows: Sequence[Sequence[Any]],
        size: float = 7.5,
        widths: Sequence[int] | None = None,
    ) -> None:
        """A monospaced table (columns padded to their widest cell)."""
        cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
        w = widths or [max(len(r[j]) for r in cells) for j in range(len(header))]
        fmt = "  ".join(f"{{:<{n}}}" for n in w)
        lines = [fmt.format(*r) for r in cells]
        lines.insert(1, "  ".join("-" * n for n in w))
        step = size / 72 * 1.4
        for i, line in enumerate(lines):
            if i > 1 and self._y + step > PAGE[1] - MARGIN:
                self._new_page()
                self._text(lines[0], size, family="monospace", fontweight="bold")
                self._y += step
            else:
                self._need(step)
            self._text(line, size, family="monospace", fontweight="bold" if i == 0 else None)
            self._y += step
        self._y += 0.1

    def key_values(self, pairs: Mapping[str, Any], size: float = 8.0) -> None:
        width = max((len(k) for k in pairs), default=0)
        step = size / 72 * 1.4
        for k, v in pairs.items():
            for i, line in enumerate(textwrap.wrap(str(v), WRAP - width - 4) or [""]):
                self._need(step)
                head = f"{k}:".ljust(width + 2) if i == 0 else " " * (width + 2)
                self._text(head + line, size, family="monospace")
                self._y += step
        self._y += 0.1

    def plot(
        self,
        draw: Callable[[Any], Any],
        height: float,
        width: float | None = None,
        left: float = 0.0,
        pad_left: float = 1.5,
        pad_bottom: float = 0.45,
    ) -> None:
        """Give ``draw`` an Axes of ``height`` inches (full text width unless ``width``)."""
        self._need(height)
        self.axes_at(draw, self._y, height, width, left, pad_left, pad_bottom)
        self._y += height + 0.1

    def axes_at(
        self,
        draw: Callable[[Any], Any],
        top: float,
        height: float,
        width: float | None = None,
        left: float = 0.0,
        pad_left: float = 1.5,
        pad_bottom: float = 0.45,
    ) -> Any:
        full = PAGE[0] - 2 * MARGIN
        w = full - left if width is None else width
        # room on the left for tick labels, at the bottom for an x label
        pad_l, pad_b, pad_t = pad_left, pad_bottom, 0.3
        rect = (
            (MARGIN + left + pad_l) / PAGE[0],
            1 - (top + height - pad_b) / PAGE[1],
            (w - pad_l - 0.2) / PAGE[0],
            (height - pad_b - pad_t) / PAGE[1],
        )
        ax = self._fig.add_axes(rect)
        draw(ax)
        return ax

    def row(self, height: float) -> float:
        """Reserve ``height`` inches for side-by-side plots; returns their top."""
        self._need(height)
        top = self._y
        self._y += height + 0.1
        return top


@contextmanager
def open_report(
    path: str | Path, *, title: str, subject: str, keywords: Sequence[str]
) -> Iterator[PageWriter]:
    """A :class:`PageWriter` on a PDF with metadata; the file appears only when complete."""
    import matplotlib
    from matplotlib.backends.backend_pdf import PdfPages

    from conceptlens._version import __version__

    meta = {
        "Title": title,
        "Author": f"conceptlens {__version__}",
        "Subject": subject,
        "Keywords": ", ".join(keywords),
        "Creator": f"conceptlens {__version__} (matplotlib {matplotlib.__version__})",
    }
    final = user_path(path)
    with (
        # labels and ids are data, never TeX: "a $\\frac{$ b" would stop the report
        matplotlib.rc_context({"pdf.fonttype": 42, "text.parse_math": False}),
        atomic_path(final) as tmp,
        PdfPages(tmp, metadata=meta) as pdf,
    ):
        writer = PageWriter(pdf, f"{title} - conceptlens {__version__}")
        yield writer
        writer.flush()
