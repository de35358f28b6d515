"""Plots: matplotlib functions that take data and return Axes (no global state)."""

from conceptlens.plot._spatial import plot_concept_maps

__all__ = [
    # spatial
    "plot_concept_maps",
]
