"""Read a PDF back: its text (pypdf), metadata and rendered pages (pypdfium2)."""

from __future__ import annotations

import re

import numpy as np


def pdf_text(path) -> str:
    from pypdf import PdfReader

    text = "\n".join(p.extract_text() for p in PdfReader(path).pages)
    return re.sub(r"[ \t]+", " ", text.replace("\u2212", "-"))


def pdf_words(path) -> str:
    """The text with every run of whitespace as one space (lines wrap anywhere)."""
    return re.sub(r"\s+", " ", pdf_text(path))


def pdf_metadata(path) -> dict:
    from pypdf import PdfReader

    return dict(PdfReader(path).metadata)


def rendered_pages(path, scale: float = 0.5) -> list[np.ndarray]:
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(str(path))
    pages = []
    try:
        for i in range(len(doc)):
            page = doc[i]
            bitmap = page.render(scale=scale)
            pages.append(np.array(bitmap.to_pil().convert("L")))
            # children closed before their parent (older pypdfium2 crashes otherwise)
            bitmap.close()
            page.close()
    finally:
        doc.close()
    return pages


def assert_not_blank(page: np.ndarray) -> None:
    """More than the footer: dark pixels above the bottom 6 % of the page."""
    body = page[: int(page.shape[0] * 0.94)]
    ink = (body < 200).mean()
    assert ink > 0.003, f"page nearly blank: {ink:.4f} of its pixels are dark"
