"""torch ``Dataset``/``DataLoader`` adapters for :class:`ImageDataset`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from conceptlens.data._dataset import SkippedSample
from conceptlens.exceptions import ConceptLensError, DataError

if TYPE_CHECKING:
    from conceptlens.data._dataset import ImageDataset

__all__ = ["ImageDataLoader", "TorchImageDataset", "collate_samples", "make_dataloader"]


class TorchImageDataset(Dataset):
    """A torch view of an :class:`ImageDataset`; items are dicts.

    In ``on_error="skip"`` mode a bad item comes back as ``{"skipped": SkippedSample}``
    and :func:`collate_samples` leaves it out of the batch.
    """

    def __init__(self, dataset: ImageDataset, transform: Any = None) -> None:
        self.dataset = dataset
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        ds = self.dataset
        try:
            s = ds[index]
        except (ConceptLensError, OSError) as exc:
            if ds.on_error == "raise":
                raise
            pos = int(index)
            path = ds._source.path(int(ds._rows[pos]))
            return {"skipped": SkippedSample(ds.ids[pos], str(exc), path, "load")}
        if self.transform is not None:
            image = self.transform(s.image)
        else:
            image = torch.from_numpy(np.ascontiguousarray(s.image.transpose(2, 0, 1)))
        label: Any = s.label
        if label is None:
            label = -1
        if isinstance(label, np.ndarray):
            label = torch.from_numpy(label.astype(np.float32))
        else:
            label = torch.tensor(int(label), dtype=torch.int64)
        return {"image": image, "label": label, "index": int(index), "id": s.id}


def collate_samples(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack items into a batch dict; skipped items go to ``batch["skipped"]``."""
    skipped = [it["skipped"] for it in items if "skipped" in it]
    good = [it for it in items if "skipped" not in it]
    batch: dict[str, Any] = {"skipped": skipped, "id": [it["id"] for it in good]}
    if not good:
        batch.update(image=None, label=None, index=torch.zeros(0, dtype=torch.int64))
        return batch
    images = [it["image"] for it in good]
    shapes = {tuple(im.shape) for im in images}
    if len(shapes) > 1:
        raise DataError(
            f"images in one batch have different sizes {sorted(shapes)}; pass a transform= "
            "that resizes them to one size (or use batch_size=1)."
        )
    batch["image"] = torch.stack([torch.as_tensor(im) for im in images])
    batch["label"] = torch.stack([it["label"] for it in good])
    batch["index"] = torch.tensor([it["index"] for it in good], dtype=torch.int64)
    return batch


class ImageDataLoader(DataLoader):
    """A ``DataLoader`` that also appends each batch's skipped samples to the dataset."""

    owner: ImageDataset | None = None

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        for batch in super().__iter__():
            if self.owner is not None:
                known = {s.id for s in self.owner.skipped}
                self.owner.skipped.extend(s for s in batch["skipped"] if s.id not in known)
            yield batch


def make_dataloader(
    dataset: ImageDataset,
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    transform: Any = None,
    shuffle: bool = False,
    seed: int = 0,
    **kwargs: Any,
) -> ImageDataLoader:
    """Build an :class:`ImageDataLoader` over ``dataset`` (see ``ImageDataset.dataloader``)."""
    generator = torch.Generator().manual_seed(int(seed)) if shuffle else None
    loader = ImageDataLoader(
        TorchImageDataset(dataset, transform=transform),
        batch_size=int(batch_size),
        shuffle=shuffle,
        num_workers=int(num_workers),
        collate_fn=collate_samples,
        generator=generator,
        **kwargs,
    )
    loader.owner = dataset
    return loader
