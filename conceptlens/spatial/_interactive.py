"""Interactive region feedback for one image: every widget action is a plain method.

:class:`RegionSession` keeps the user's boxes, masks, rejected concepts and dropped
prototypes for one image and recomputes the prediction from the image's cached patch
embeddings (no backbone call).  :meth:`RegionSession.widget` wraps the same methods in
an ipywidgets panel when ipywidgets is installed.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from conceptlens.exceptions import ConceptLensError, ConfigError, DataError, MissingDependencyError
from conceptlens.spatial._feedback import importance_map, region_feedback

__all__ = ["RegionSession"]


class RegionSession:
    """Region feedback, concept rejection and prototype removal on one image.

    Parameters
    ----------
    model : fitted PrototypeClassifier
    patches : array (gh, gw, D) or (1, gh, gw, D)
        The image's patch embeddings (computed once).
    image : uint8 array (S, S, 3), optional
        The image, for :meth:`plot` and the widget.
    sample_id : str, default "image"
        Used in error messages.
    alpha : float, default 0.2
        Weight outside positive regions.

    Examples
    --------
    >>> s = RegionSession(clf, P[0], image=images[0])  # doctest: +SKIP
    >>> s.add_box((0, 0, 96, 12), positive=False).prediction.item()  # doctest: +SKIP
    'nevus'
    >>> s.reject_concept("purple_ink"); s.drop_prototypes(["ruler/0"])  # doctest: +SKIP
    """

    def __init__(
        self,
        model: Any,
        patches: Any,
        *,
        image: Any = None,
        sample_id: str = "image",
        alpha: float = 0.2,
    ) -> None:
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(model, "head_")
        p = np.asarray(patches, dtype=np.float32)
        if p.ndim == 3:
            p = p[None]
        if p.ndim != 4 or len(p) != 1:
            raise DataError(
                f"sample {sample_id!r}: a session holds one image's patches (gh, gw, D), got "
                f"{np.shape(patches)}"
            )
        try:
            model.atlas.similarity(p)  # the atlas's grid and dim, finite values
        except DataError as err:
            raise DataError(f"sample {sample_id!r}: {err}") from None
        if not 0 <= alpha <= 1:
            raise ConfigError(f"alpha must be in [0, 1], got {alpha!r}")
        size = int(model.atlas.image_size)
        if image is not None:
            img = np.asarray(image)
            if img.ndim != 3 or img.shape[:2] != (size, size) or img.shape[2] not in (3, 4):
                raise DataError(
                    f"sample {sample_id!r}: image has shape {img.shape}; the session draws "
                    f"boxes on the backbone's input, so pass the ({size}, {size}, 3) image "
                    "the patches were computed from"
                )
            if img.dtype != np.uint8 and not (
                np.issubdtype(img.dtype, np.floating)
                and np.isfinite(img).all()
                and img.min() >= 0
                and img.max() <= 1
            ):
                raise DataError(
                    f"sample {sample_id!r}: image must be uint8 or float in [0, 1], got "
                    f"{img.dtype} in [{np.nanmin(img)}, {np.nanmax(img)}]"
                )
        self.original_model = model
        self.model = model
        self.patches = p
        self.image = None if image is None else np.asarray(image)
        self.sample_id = str(sample_id)
        self.alpha = float(alpha)
        self.positive: list[Any] = []
        self.negative: list[Any] = []
        self.rejected: list[str] = []
        self.dropped: list[str] = []
        self._history: list[tuple[str, Any]] = []

    # ------------------------------------------------------------------ actions
    def _size(self) -> int:
        return int(self.model.atlas.image_size)

    def add_box(self, box: Sequence[float], *, positive: bool = False) -> xr.Dataset:
        """Add a box ``(x0, y0, x1, y1)`` in pixels: positive (look here) or negative."""
        return self._add(tuple(box), positive)

    def _add(self, region: Any, positive: bool) -> xr.Dataset:
        kind = "positive" if positive else "negative"
        # validate first (raises naming the sample), so a bad region leaves no trace
        if positive:
            importance_map(self._size(), positive=[region], sample=self.sample_id)
        else:
            importance_map(self._size(), negative=[region], sample=self.sample_id)
        getattr(self, kind).append(region)
        self._history.append((kind, None))
        return self.result()

    def add_mask(self, mask: Any, *, positive: bool = False) -> xr.Dataset:
        """Add a bool mask (S, S): positive or negative region."""
        m = np.asarray(mask)
        if m.ndim != 2:
            raise DataError(f"sample {self.sample_id!r}: a mask must be 2-D, got {m.shape}")
        return self._add(m.astype(bool), positive)

    def reject_concept(self, concept: str) -> xr.Dataset:
        """Replace the concept's prototype activations by their typical-absent value."""
        self.model.atlas.of_concept(str(concept))  # raises on an unknown concept
        if self.model.typical_absent_ is None:  # refuse before the state changes
            raise ConfigError(
                "concept rejection needs the typical-absent activations: fit the classifier "
                "with concept_labels=..."
            )
        if concept not in self.rejected:
            self.rejected.append(str(concept))
            self._history.append(("reject", None))
        return self.result()

    def drop_prototypes(self, prototypes: Sequence[str]) -> xr.Dataset:
        """Remove prototypes and refit the head only (on the training activations)."""
        from conceptlens.spatial._atlas import names_list

        names = names_list(prototypes, "prototypes", allow_empty=False)
        previous = self.model
        self.model = self.model.remove_prototypes(names)
        self.dropped.extend(n for n in names if n not in self.dropped)
        self._history.append(("model", previous))
        return self.result()

    def undo(self) -> xr.Dataset:
        """Undo the last action."""
        if self._history:
            kind, previous = self._history.pop()
            if kind in ("positive", "negative"):
                getattr(self, kind).pop()
            elif kind == "reject":
                self.rejected.pop()
            else:
                self.model = previous
                self.dropped = [q for q in self.dropped if q not in previous.prototypes_]
        return self.result()

    def reset(self) -> xr.Dataset:
        """Back to the original model without feedback."""
        self.model = self.original_model
        self.positive, self.negative, self.rejected, self.dropped = [], [], [], []
        self._history = []
        return self.result()

    # ------------------------------------------------------------------ state
    def importance(self) -> np.ndarray:
        """The current importance map (S, S)."""
        return importance_map(
            self._size(),
            positive=self.positive or None,
            negative=self.negative or None,
            alpha=self.alpha,
            sample=self.sample_id,
        )

    def result(self) -> xr.Dataset:
        """:func:`region_feedback` of the image under the current feedback."""
        return region_feedback(
            self.model,
            self.patches,
            importance=self.importance(),
            reject=self.rejected,
            sample_ids=[self.sample_id],
        )

    def contributions(self, k: int = 5, result: xr.Dataset | None = None) -> xr.DataArray:
        """The ``k`` prototypes with the largest |reliance| for the predicted class."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ConfigError(f"k must be an int >= 1, got {k!r}")
        res = self.result() if result is None else result
        cls = str(res.prediction.values[0])
        rel = res.reliance.isel(sample=0).sel({"class": cls})
        order = np.argsort(-np.abs(rel.values), kind="stable")[: int(k)]
        return rel.isel(prototype=order)

    def contributions_html(self, k: int = 5, result: xr.Dataset | None = None) -> str:
        """:meth:`contributions` as a small HTML table (what the widget shows).

        Examples
        --------
        >>> RegionSession(clf, P[0]).contributions_html(k=3)[:7]  # doctest: +SKIP
        '<table>'
        """
        top = self.contributions(k, result)
        rows = "".join(
            f"<tr><td>{q}</td><td>{v:+.3f}</td></tr>"
            for q, v in zip(top.prototype.values, top.values, strict=True)
        )
        cls = html.escape(str(top["class"].values))
        return f"<table><tr><th>prototype</th><th>reliance for {cls}</th></tr>{rows}</table>"

    def summary(self) -> str:
        """One line: prediction, probability and the feedback given."""
        res = self.result()
        cls = str(res.prediction.values[0])
        p = float(res.proba.sel({"class": cls}).values[0])
        return (
            f"{self.sample_id}: {cls} ({p:.2f}); {len(self.positive)} positive, "
            f"{len(self.negative)} negative region(s); rejected {self.rejected}; "
            f"dropped {len(self.dropped)} prototype(s)"
        )

    # ------------------------------------------------------------------ widget
    def widget(self) -> Any:
        """An ipywidgets panel over the same methods (box entry, reject, drop, undo).

        Returns a ``VBox``: box coordinates, polarity, concept and prototype pickers, the
        buttons (add box, reject concept, drop prototypes, undo, reset), the status line
        (:meth:`summary`), the top contributions (:meth:`contributions_html`) and the plot
        (:meth:`plot`, when the session has an image). Each button calls the method of
        the same name, so a script can replay what a user did in the panel.
        """
        try:
            import ipywidgets as w
        except ImportError as exc:
            raise MissingDependencyError(
                "the region-feedback widget needs ipywidgets (pip install ipywidgets); every "
                "action is also a RegionSession method: add_box, add_mask, reject_concept, "
                "drop_prototypes, undo, reset"
            ) from exc
        s = self._size()
        coords = [
            w.BoundedIntText(value=v, min=0, max=s, description=d, layout={"width": "140px"})
            for v, d in ((0, "x0"), (0, "y0"), (s, "x1"), (s // 8, "y1"))
        ]
        polarity = w.ToggleButtons(options=["negative", "positive"])
        concept = w.Dropdown(options=self.model.atlas.concept_names, description="concept")
        protos = w.SelectMultiple(options=list(self.model.prototypes_), rows=6)
        status = w.HTML()
        contrib = w.HTML()
        out = w.Output()

        def refresh(_res: Any = None) -> None:
            status.value = self.summary()
            contrib.value = self.contributions_html()
            protos.options = list(self.model.prototypes_)
            with out:
                out.clear_output(wait=True)
                if self.image is not None:
                    self.plot()
                    import matplotlib.pyplot as plt

                    plt.show()

        def on_box(_b: Any) -> None:
            try:
                self.add_box([c.value for c in coords], positive=polarity.value == "positive")
            except ConceptLensError as err:
                status.value = f"<b>{html.escape(str(err))}</b>"
                return
            refresh()

        def action(fn: Any) -> Any:
            def run(_b: Any) -> None:
                try:
                    fn()
                except ConceptLensError as err:
                    status.value = f"<b>{html.escape(str(err))}</b>"
                    return
                refresh()

            return run

        buttons = {
            "add box": on_box,
            "reject concept": action(lambda: self.reject_concept(concept.value)),
            "drop prototypes": action(lambda: self.drop_prototypes(list(protos.value))),
            "undo": action(self.undo),
            "reset": action(self.reset),
        }
        row = []
        for label, fn in buttons.items():
            b = w.Button(description=label)
            b.on_click(fn)
            row.append(b)
        refresh()
        return w.VBox(
            [
                w.HBox(coords),
                polarity,
                w.HBox([concept, protos]),
                w.HBox(row),
                status,
                contrib,
                out,
            ]
        )

    def plot(self, k: int = 4, axes: Any = None) -> Any:
        """Image with the importance map, then the top-``k`` prototypes' evidence maps."""
        from conceptlens.plot import plot_concept_maps

        if self.image is None:
            raise DataError(f"sample {self.sample_id!r}: pass image= to plot the session")
        res = self.result()
        top = [str(q) for q in self.contributions(k, res).prototype.values]
        sim = self.model.atlas.similarity(self.patches).sel(prototype=top)
        grid_a = res.importance.values[0]
        maps = (sim.drop_vars("concept") * grid_a).isel(sample=0).rename(prototype="concept")
        return plot_concept_maps(self.image, maps, axes=axes)
