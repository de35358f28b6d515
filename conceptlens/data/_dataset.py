"""The :class:`ImageDataset` every loader returns, and its :class:`Sample`."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from conceptlens.data._labels import encode_multi, encode_single
from conceptlens.data._sources import ArrayImages, ArrayMasks
from conceptlens.exceptions import ConceptLensError, ConfigError, DataError

if TYPE_CHECKING:
    from conceptlens.data._torch import ImageDataLoader, TorchImageDataset

__all__ = ["ImageDataset", "Sample", "SkippedSample"]

OnError = Literal["raise", "skip"]
_MAX_LISTED = 10


@dataclass(repr=False)
class Sample:
    """One decoded sample.

    Attributes
    ----------
    id : str
        Sample id (unique in its dataset).
    image : np.ndarray
        ``uint8`` ``(H, W, 3)``.
    label : int, np.ndarray or None
        Class index (single label), ``float32`` 0/1 vector (multi-label; NaN = unknown),
        or None for an unlabelled dataset.
    metadata : dict
        The sample's row of :attr:`ImageDataset.metadata`.
    masks : dict of str to np.ndarray
        ``bool`` ``(H, W)`` masks by name (``roi_mask`` is the region of interest).
    """

    id: str
    image: np.ndarray
    label: Any
    metadata: dict[str, Any] = field(default_factory=dict)
    masks: dict[str, np.ndarray] = field(default_factory=dict)

    def __repr__(self) -> str:
        label = self.label.tolist() if isinstance(self.label, np.ndarray) else self.label
        return (
            f"Sample(id={self.id!r}, image={self.image.dtype}{self.image.shape}, "
            f"label={label!r}, metadata={sorted(self.metadata)}, masks={sorted(self.masks)})"
        )


@dataclass(frozen=True)
class SkippedSample:
    """A sample left out because of bad input, and why."""

    id: str
    reason: str
    path: str | None = None
    stage: str = "load"

    def __str__(self) -> str:
        where = f" ({self.path})" if self.path and self.path not in self.reason else ""
        return f"{self.id}{where}: {self.reason}"


def _check_on_error(on_error: str) -> None:
    if on_error not in ("raise", "skip"):
        raise ConfigError(f"on_error must be 'raise' or 'skip', not {on_error!r}.")


def _format_problems(problems: Sequence[SkippedSample], what: str) -> str:
    lines = [f"  - {p}" for p in problems[:_MAX_LISTED]]
    more = len(problems) - _MAX_LISTED
    if more > 0:
        lines.append(f"  ... and {more} more")
    return (
        f"{len(problems)} {what}:\n"
        + "\n".join(lines)
        + "\nFix the rows/files above, or pass on_error='skip' to leave them out "
        "(every skipped sample is listed in ds.skipped)."
    )


class ImageDataset:
    """A labelled image collection that decodes images lazily.

    Build one with a loader (:func:`load_manifest`, :func:`load_folder`,
    :func:`load_npz`, :func:`load_dicom`, an adapter) or :meth:`from_arrays`; the
    constructor is the low-level path those use. File-backed datasets decode one
    image at a time, so iterating never holds the whole set in memory.

    Parameters
    ----------
    metadata : pandas.DataFrame
        One row per sample, index = sample ids (unique strings); holds the label
        column(s) and every metadata column.
    images : source object
        Pixel source with ``load(row)``, ``describe(row)`` and ``path(row)``
        (see ``conceptlens.data._sources``), aligned with ``metadata`` rows.
    label_column : str, optional
        Single-label column of ``metadata``.
    label_columns : list of str, optional
        Multi-label 0/1 columns of ``metadata`` (exclusive with ``label_column``).
    classes : list of str, optional
        Class names; inferred (sorted) from a single-label column when omitted.
    masks : dict, optional
        Mask name -> mask source aligned with ``metadata`` rows.
    on_error : {"raise", "skip"}
        What to do with bad samples: raise a :class:`~conceptlens.exceptions.DataError`
        naming them, or leave them out and record each in :attr:`skipped`.
    allow_missing_labels : bool
        Multi-label only: keep NaN entries (meaning "unknown") instead of rejecting them.
    row_names : list of str, optional
        How to name each row in messages (for example the manifest line).
    row_problems : dict of int to str, optional
        Rows a loader already found bad (position -> reason), handled per ``on_error``.
    dicom_options : DicomOptions, optional
        Kept for reference; the image source applies them.

    Attributes
    ----------
    skipped : list of SkippedSample
        Samples left out (at construction, by :meth:`validate`, or while iterating).
    """

    def __init__(
        self,
        metadata: pd.DataFrame,
        images: Any,
        *,
        label_column: str | None = None,
        label_columns: Sequence[str] | None = None,
        classes: Sequence[str] | None = None,
        masks: Mapping[str, Any] | None = None,
        on_error: OnError = "raise",
        allow_missing_labels: bool = False,
        row_names: Sequence[str] | None = None,
        row_problems: Mapping[int, str] | None = None,
        dicom_options: Any = None,
    ) -> None:
        _check_on_error(on_error)
        if label_column is not None and label_columns is not None:
            raise ConfigError("give label_column (single label) or label_columns, not both.")
        if not isinstance(metadata, pd.DataFrame):
            raise ConfigError("metadata must be a pandas DataFrame indexed by sample id.")
        n = len(metadata)
        if len(images) != n:
            raise DataError(f"{len(images)} images but {n} metadata rows; they must match.")
        if n == 0:
            raise DataError(
                "the dataset is empty (no rows); check the manifest, folder or split you loaded."
            )
        ids = [str(i) for i in metadata.index]
        names = list(row_names) if row_names is not None else [f"row {k}" for k in range(n)]
        for col in [label_column, *(label_columns or [])]:
            if col is not None and col not in metadata.columns:
                raise DataError(
                    f"label column {col!r} not found; available columns: "
                    f"{list(metadata.columns)}. Pass label_column= with one of them."
                )
        self.on_error: OnError = on_error
        self.skipped: list[SkippedSample] = []
        bad: dict[int, str] = dict(row_problems or {})
        seen: dict[str, int] = {}
        for k, i in enumerate(ids):
            if i in seen:
                dup = f"duplicate id {i!r} (first at {names[seen[i]]}); ids must be unique"
                bad.setdefault(k, dup)
            else:
                seen[i] = k
        codes: np.ndarray | None = None
        if label_column is not None:
            codes, class_list, lab_bad = encode_single(metadata[label_column], classes)
            for k, r in lab_bad.items():
                bad.setdefault(k, r)
        elif label_columns is not None:
            label_columns = [str(c) for c in label_columns]
            if classes is not None and list(classes) != label_columns:
                raise ConfigError("for multi-label data the classes are the label columns.")
            codes, lab_bad = encode_multi(
                metadata, label_columns, allow_missing=allow_missing_labels
            )
            for k, r in lab_bad.items():
                bad.setdefault(k, r)
            class_list = list(label_columns)
        else:
            class_list = [str(c) for c in classes] if classes is not None else []
        problems = [
            SkippedSample(
                id=ids[k], reason=f"{names[k]}: {bad[k]}", path=images.path(k), stage="labels"
            )
            for k in sorted(bad)
        ]
        if problems and on_error == "raise":
            raise DataError(_format_problems(problems, "bad row(s)"))
        keep = np.array([k not in bad for k in range(n)], dtype=bool)
        if not keep.any():
            raise DataError(
                "every sample was skipped, so the dataset is empty:\n"
                + "\n".join(f"  - {p}" for p in problems[:_MAX_LISTED])
            )
        self.skipped.extend(problems)
        meta = metadata.copy()
        meta.index = pd.Index(ids, name="id")
        self._source = images
        self._masks = dict(masks or {})
        self._rows = np.flatnonzero(keep).astype(np.int64)
        self._meta = meta.iloc[self._rows]
        self._codes = None if codes is None else codes[self._rows]
        self._classes = class_list
        self._label_column = label_column
        self._label_columns = list(label_columns) if label_columns is not None else None
        self.dicom_options = dicom_options

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_arrays(
        cls,
        images: Any,
        metadata: pd.DataFrame | None = None,
        *,
        label_column: str | None = "label",
        label_columns: Sequence[str] | None = None,
        classes: Sequence[str] | None = None,
        ids: Sequence[str] | None = None,
        masks: Mapping[str, Any] | None = None,
        on_error: OnError = "raise",
    ) -> ImageDataset:
        """Wrap in-memory arrays (the arrays are held, not copied).

        Parameters
        ----------
        images : np.ndarray
            ``uint8`` ``(N, H, W, 3)`` (greyscale ``(N, H, W)`` is repeated to RGB).
        metadata : pandas.DataFrame, optional
            N rows: label column(s) and metadata columns.
        label_column : str or None
            Single-label column; the default ``"label"`` is used only if present.
        label_columns : list of str, optional
            Multi-label 0/1 columns instead of ``label_column``.
        classes : list of str, optional
            Class names; integer labels index into it.
        ids : list of str, optional
            Sample ids; otherwise an ``id`` column, a non-default index, or ``"0"...``.
        masks : dict of str to np.ndarray, optional
            Mask name -> ``bool`` ``(N, H, W)``.
        on_error : {"raise", "skip"}

        Returns
        -------
        ImageDataset

        Examples
        --------
        >>> import numpy as np, pandas as pd
        >>> ds = ImageDataset.from_arrays(
        ...     np.zeros((2, 8, 8, 3), np.uint8), pd.DataFrame({"label": ["a", "b"]}))
        >>> len(ds), ds.classes, ds[1].label
        (2, ['a', 'b'], 1)
        """
        arr = images
        if not hasattr(arr, "shape") or len(arr.shape) not in (3, 4):
            raise DataError("images must be an array of shape (N, H, W, 3) or (N, H, W).")
        n = int(arr.shape[0])
        frame = pd.DataFrame(index=pd.RangeIndex(n)) if metadata is None else metadata.copy()
        if len(frame) != n:
            raise DataError(f"{n} images but {len(frame)} metadata rows; they must match.")
        if ids is not None:
            id_list = [str(i) for i in ids]
            if len(id_list) != n:
                raise DataError(f"{n} images but {len(id_list)} ids; they must match.")
        elif "id" in frame.columns:
            id_list = [str(i) for i in frame.pop("id")]
        elif not isinstance(frame.index, pd.RangeIndex):
            id_list = [str(i) for i in frame.index]
        else:
            id_list = [str(i) for i in range(n)]
        frame.index = pd.Index(id_list, name="id")
        if label_columns is not None:
            label_column = None
        elif label_column is not None and label_column not in frame.columns:
            if label_column != "label":
                raise DataError(
                    f"label column {label_column!r} not in metadata columns {list(frame.columns)}."
                )
            label_column = None
        mask_sources: dict[str, Any] = {}
        for name, m in (masks or {}).items():
            if len(m) != n:
                raise DataError(f"mask {name!r} has {len(m)} rows but there are {n} images.")
            if tuple(m.shape[1:3]) != tuple(arr.shape[1:3]):
                raise DataError(
                    f"mask {name!r} is {m.shape[1]}x{m.shape[2]} but images are "
                    f"{arr.shape[1]}x{arr.shape[2]}; masks must have the image size."
                )
            mask_sources[name] = ArrayMasks(m, name)
        return cls(
            frame,
            ArrayImages(arr),
            label_column=label_column,
            label_columns=label_columns,
            classes=classes,
            masks=mask_sources,
            on_error=on_error,
        )

    # ------------------------------------------------------------------ properties
    def __len__(self) -> int:
        return len(self._rows)

    def __repr__(self) -> str:
        if self._label_columns is not None:
            lab = f"label_columns={self._label_columns}"
        else:
            lab = f"label_column={self._label_column!r}, classes={self._classes}"
        return f"<ImageDataset n={len(self)} {lab} masks={sorted(self._masks)}>"

    @property
    def ids(self) -> list[str]:
        """Sample ids in order."""
        return [str(i) for i in self._meta.index]

    @property
    def metadata(self) -> pd.DataFrame:
        """Metadata (label column(s) included), index = sample id."""
        return self._meta

    @property
    def classes(self) -> list[str]:
        """Class names (the label columns for multi-label data)."""
        return list(self._classes)

    @property
    def label_column(self) -> str | None:
        """The single-label column, or None."""
        return self._label_column

    @property
    def label_columns(self) -> list[str]:
        """Label columns: the multi-label columns, or ``[label_column]``, or ``[]``."""
        if self._label_columns is not None:
            return list(self._label_columns)
        return [self._label_column] if self._label_column is not None else []

    @property
    def is_multilabel(self) -> bool:
        return self._label_columns is not None

    @property
    def mask_names(self) -> list[str]:
        return sorted(self._masks)

    @property
    def labels(self) -> np.ndarray | None:
        """All labels without decoding images: ``int64`` (N,) or ``float32`` (N, L)."""
        return None if self._codes is None else self._codes.copy()

    def paths(self) -> list[str | None]:
        """The image file of each sample (None for in-memory data)."""
        return [self._source.path(int(r)) for r in self._rows]

    # ------------------------------------------------------------------ access
    def _position(self, i: int) -> int:
        n = len(self)
        i = int(i)
        if i < -n or i >= n:
            raise IndexError(f"sample index {i} out of range for {n} samples")
        return i % n

    def load_image(self, i: int) -> np.ndarray:
        """Decode sample ``i``'s image as ``uint8`` ``(H, W, 3)``."""
        return self._source.load(int(self._rows[self._position(i)]))

    def _label(self, pos: int) -> Any:
        if self._codes is None:
            return None
        if self._codes.ndim == 2:
            return self._codes[pos].copy()
        return int(self._codes[pos])

    def __getitem__(self, i: int) -> Sample:
        pos = self._position(i)
        row = int(self._rows[pos])
        image = self._source.load(row)
        masks: dict[str, np.ndarray] = {}
        for name, src in self._masks.items():
            m = src.load(row, image.shape[:2])
            if m is not None:
                masks[name] = m
        meta = self._meta.iloc[pos].to_dict()
        return Sample(
            id=str(self._meta.index[pos]),
            image=image,
            label=self._label(pos),
            metadata=meta,
            masks=masks,
        )

    def _try_get(self, pos: int) -> Sample | None:
        """Return sample ``pos``, or None (recorded in ``skipped``) in skip mode."""
        if self.on_error == "raise":
            return self[pos]
        try:
            return self[pos]
        except (ConceptLensError, OSError) as exc:
            self._record(pos, exc)
            return None

    def _record(self, pos: int, exc: BaseException) -> None:
        sid = str(self._meta.index[pos])
        if any(s.id == sid for s in self.skipped):
            return
        path = self._source.path(int(self._rows[pos]))
        self.skipped.append(SkippedSample(id=sid, reason=str(exc), path=path, stage="load"))

    def __iter__(self) -> Iterator[Sample]:
        for pos in range(len(self)):
            s = self._try_get(pos)
            if s is not None:
                yield s

    def iter_batches(self, batch_size: int = 64) -> Iterator[list[Sample]]:
        """Yield lists of up to ``batch_size`` decoded samples, in order.

        Only one batch is decoded at a time. In ``on_error="skip"`` mode a bad sample is
        left out of its batch and recorded in :attr:`skipped`.

        Examples
        --------
        >>> import numpy as np
        >>> ds = ImageDataset.from_arrays(np.zeros((5, 4, 4, 3), np.uint8))
        >>> [len(b) for b in ds.iter_batches(2)]
        [2, 2, 1]
        """
        if int(batch_size) < 1:
            raise ConfigError(f"batch_size must be >= 1, not {batch_size}.")
        batch: list[Sample] = []
        for s in self:
            batch.append(s)
            if len(batch) == batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    # ------------------------------------------------------------------ derived sets
    def subset(self, indices: Sequence[int] | np.ndarray) -> ImageDataset:
        """Return the samples at ``indices`` (positions, or a boolean mask) as a new dataset.

        The subset shares the image source (nothing is decoded or copied).
        """
        idx = np.asarray(indices)
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise DataError(f"boolean mask has shape {idx.shape}; expected ({len(self)},).")
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64).reshape(-1)
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise IndexError(f"subset indices out of range for {len(self)} samples")
        idx = idx % max(len(self), 1)
        if idx.size == 0:
            raise DataError("subset is empty; select at least one sample.")
        new = object.__new__(ImageDataset)
        new.__dict__.update(self.__dict__)
        new._rows = self._rows[idx]
        new._meta = self._meta.iloc[idx]
        new._codes = None if self._codes is None else self._codes[idx]
        new.skipped = []
        return new

    def select_ids(self, ids: Sequence[str]) -> ImageDataset:
        """Return the samples with these ids, in the given order."""
        lookup = {s: k for k, s in enumerate(self.ids)}
        missing = [i for i in ids if str(i) not in lookup]
        if missing:
            raise DataError(
                f"{len(missing)} ids are not in the dataset (first: {missing[:5]}); "
                "was the split made for another dataset?"
            )
        return self.subset([lookup[str(i)] for i in ids])

    def split(self, split: str | Mapping[str, Sequence[str]], **kwargs: Any) -> Any:
        """Split the dataset.

        ``split`` is a column name (for example the ``split`` column of an npz set), a
        ``{split: ids}`` mapping from :func:`make_splits`/:func:`load_splits`, or a split
        strategy name passed to :func:`make_splits` with ``kwargs``.

        Returns
        -------
        dict of str to ImageDataset
        """
        from conceptlens.data._splits import make_splits

        if isinstance(split, Mapping):
            parts = split
        elif split in self._meta.columns and not kwargs:
            col = self._meta[split].astype(str).to_numpy()
            return {str(v): self.subset(np.flatnonzero(col == v)) for v in pd.unique(col)}
        else:
            parts = make_splits(self, strategy=split, **kwargs)  # type: ignore[arg-type]
        empty = [name for name, ids in parts.items() if len(ids) == 0]
        if empty:
            raise DataError(
                f"splits {empty} are empty ({len(self)} samples); use larger fractions, "
                "fewer splits, or more data."
            )
        return {name: self.select_ids(list(ids)) for name, ids in parts.items()}

    def validate(self) -> ImageDataset:
        """Decode every image and mask now.

        Returns
        -------
        ImageDataset
            ``self`` if every sample is readable; in ``on_error="skip"`` mode, otherwise
            a subset without the bad samples (each listed in its :attr:`skipped`).

        Raises
        ------
        DataError
            In ``on_error="raise"`` mode, listing every bad sample.
        """
        from conceptlens._progress import progress

        problems: list[SkippedSample] = []
        good: list[int] = []
        for pos in progress(range(len(self)), total=len(self), desc="validating"):
            try:
                self[pos]
            except (ConceptLensError, OSError) as exc:
                sid = str(self._meta.index[pos])
                path = self._source.path(int(self._rows[pos]))
                problems.append(SkippedSample(sid, str(exc), path, "validate"))
            else:
                good.append(pos)
        if not problems:
            return self
        if self.on_error == "raise":
            raise DataError(_format_problems(problems, "unreadable sample(s)"))
        if not good:
            raise DataError(_format_problems(problems, "unreadable samples (all of them)"))
        new = self.subset(good)
        known = {s.id for s in self.skipped}
        new.skipped = list(self.skipped) + [p for p in problems if p.id not in known]
        return new

    # ------------------------------------------------------------------ torch
    def to_torch(self, transform: Any = None) -> TorchImageDataset:
        """Return a ``torch.utils.data.Dataset`` view of this dataset.

        Items are dicts with ``image`` (``transform(uint8 HxWx3)`` if given, else a
        ``uint8`` tensor ``(3, H, W)``), ``label``, ``index`` and ``id``.
        """
        from conceptlens.data._torch import TorchImageDataset

        return TorchImageDataset(self, transform=transform)

    def dataloader(
        self,
        batch_size: int = 64,
        num_workers: int = 0,
        transform: Any = None,
        *,
        shuffle: bool = False,
        seed: int = 0,
        **kwargs: Any,
    ) -> ImageDataLoader:
        """Return a ``torch.utils.data.DataLoader`` that stacks images into batches.

        Batches are dicts: ``image`` (B, 3, H, W), ``label``, ``index`` (B,), ``id`` (list)
        and ``skipped`` (samples left out of this batch in ``on_error="skip"`` mode; they are
        also appended to :attr:`skipped` as batches arrive, even from worker processes).
        """
        from conceptlens.data._torch import make_dataloader

        return make_dataloader(
            self,
            batch_size=batch_size,
            num_workers=num_workers,
            transform=transform,
            shuffle=shuffle,
            seed=seed,
            **kwargs,
        )
