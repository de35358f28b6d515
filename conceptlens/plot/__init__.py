"""Matplotlib figures of conceptlens results: data in, ``Axes`` out, no pyplot state.

Every function takes ``ax=None``; without one it draws on a new ``Figure`` that pyplot does
not track (``ax.figure.savefig(...)`` to write it), so it is safe in scripts, servers and
notebooks alike. In Jupyter, a returned ``Axes`` or ``Figure`` displays as an image, with or
without ``%matplotlib inline`` (pyplot's own figures are left as they were).
"""

from conceptlens.plot._bank import bank_quality_bars
from conceptlens.plot._common import register_notebook_display
from conceptlens.plot._concepts import concept_distributions, contribution_waterfall, head_weights
from conceptlens.plot._images import image_gallery, synthderm_montage
from conceptlens.plot._spatial import plot_concept_maps
from conceptlens.plot._studies import (
    intervention_curves,
    masking_grid,
    metric_forest,
    metric_table,
)

__all__ = [
    # images
    "image_gallery",
    "synthderm_montage",
    # concepts and heads
    "concept_distributions",
    "head_weights",
    "contribution_waterfall",
    # studies
    "metric_table",
    "metric_forest",
    "intervention_curves",
    "masking_grid",
    # concept banks
    "bank_quality_bars",
    # spatial
    "plot_concept_maps",
]

register_notebook_display()  # in Jupyter, returned figures and axes display as images
