"""On-disk embedding cache: compute each image once per backbone.

Layout (one folder per backbone fingerprint, which covers backbone id, weights hash,
preprocessing and precision)::

    <root>/<fingerprint>/cache.json                  format, fingerprint
    <root>/<fingerprint>/<kind>/seg-<uuid>/          one zarr group per writer session
        data   (rows, *row_shape) float32            embeddings ("image") or patch grids
        keys   (rows, 32) uint8                      sha256 of the decoded image + shape
        check  (rows, 8) uint8                       blake2b(key + row bytes), per row
        commit.json                                  rows committed + sha256 of their keys

Writes are incremental and atomic: rows are appended to the zarr arrays first and only
become visible when ``commit.json`` is atomically replaced, after every batch. A run that
is killed halfway leaves every committed batch usable, and the next run encodes only what
is missing. Each writer (process, Dask worker) owns its own segment, so concurrent writers
never touch the same files. Anything that does not verify (unreadable metadata, a keys
checksum or a row checksum that does not match, a row shape that differs) raises
:class:`~conceptlens.exceptions.CacheError` naming the folder to delete; nothing corrupted
is ever returned.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from conceptlens._io import atomic_write_text, user_path
from conceptlens.exceptions import CacheError

__all__ = ["EmbeddingCache"]

_FORMAT = "conceptlens-embedding-cache"
_VERSION = 1


def _row_check(key: bytes, row: np.ndarray) -> bytes:
    return hashlib.blake2b(key + np.ascontiguousarray(row).tobytes(), digest_size=8).digest()


class _Segment:
    def __init__(self, path: Path, rows: int) -> None:
        self.path = path
        self.rows = rows
        self._arrays: dict[str, Any] = {}

    def array(self, name: str) -> Any:
        if name not in self._arrays:
            import zarr

            self._arrays[name] = zarr.open_array(str(self.path / name), mode="r")
        return self._arrays[name]


class EmbeddingCache:
    """Content-addressed embedding store for one backbone fingerprint.

    Parameters
    ----------
    root : path
        Cache folder (shared by every backbone; each gets a sub-folder).
    fingerprint : str
        :attr:`Backbone.fingerprint`.
    row_shape : tuple of int
        Shape of one entry: ``(D,)`` for image embeddings, ``(gh, gw, D)`` for patches.
    kind : str, default "image"
        Entry kind (``image`` or ``patch``), stored separately.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> c = EmbeddingCache(tempfile.mkdtemp(), "toy", row_shape=(4,))
    >>> with c.writer() as w:
    ...     w.append(["ab" * 32], np.ones((1, 4), np.float32))
    >>> c.get(["ab" * 32]).shape
    (1, 4)
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        fingerprint: str,
        *,
        row_shape: Sequence[int],
        kind: str = "image",
        chunk_rows: int | None = None,
    ) -> None:
        self.root = user_path(root)
        self.fingerprint = fingerprint
        self.kind = kind
        self.row_shape = tuple(int(s) for s in row_shape)
        row_bytes = 4 * int(np.prod(self.row_shape))
        self.chunk_rows = int(chunk_rows or max(1, min(1024, (4 << 20) // max(row_bytes, 1))))
        self.folder = self.root / _safe(fingerprint)
        self.kind_dir = self.folder / kind
        self._check_manifest()
        self._index: dict[bytes, tuple[int, int]] = {}
        self._segments: list[_Segment] = []
        self.refresh()

    # ------------------------------------------------------------------ metadata
    def _fail(self, what: str) -> CacheError:
        return CacheError(
            f"embedding cache {self.folder} is corrupted or was written for something else: "
            f"{what}. It is not reused; delete {self.folder} (or point --cache-dir elsewhere) and "
            "rerun to rebuild it."
        )

    def _check_manifest(self) -> None:
        manifest = self.folder / "cache.json"
        expected = {"format": _FORMAT, "version": _VERSION, "fingerprint": self.fingerprint}
        fresh = not manifest.exists()
        if not fresh:
            try:
                found = json.loads(manifest.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise self._fail(f"unreadable {manifest.name} ({exc})") from exc
            if found != expected:
                raise self._fail(f"{manifest.name} says {found}, expected {expected}")
        self.kind_dir.mkdir(parents=True, exist_ok=True)
        if fresh:
            atomic_write_text(manifest, json.dumps(expected, sort_keys=True))

    def refresh(self) -> None:
        """Re-read the committed segments (entries written by other processes appear)."""
        index: dict[bytes, tuple[int, int]] = {}
        segments: list[_Segment] = []
        for seg_dir in sorted(p for p in self.kind_dir.glob("seg-*") if p.is_dir()):
            commit = seg_dir / "commit.json"
            if not commit.exists():
                continue  # a writer died before its first commit: nothing visible
            try:
                meta = json.loads(commit.read_text(encoding="utf-8"))
                rows = int(meta["rows"])
                keys_sha = str(meta["keys_sha256"])
                shape = tuple(meta["row_shape"])
                fp = meta["fingerprint"]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise self._fail(f"unreadable {commit} ({exc})") from exc
            if fp != self.fingerprint or shape != self.row_shape:
                raise self._fail(
                    f"{commit} is for fingerprint {fp!r} rows of shape {shape}, expected "
                    f"{self.fingerprint!r} {self.row_shape}"
                )
            seg = _Segment(seg_dir, rows)
            try:
                keys_arr = seg.array("keys")
                data_arr = seg.array("data")
                if keys_arr.shape[0] < rows or data_arr.shape[0] < rows:
                    raise ValueError(
                        f"arrays hold {keys_arr.shape[0]}/{data_arr.shape[0]} rows, "
                        f"{rows} committed"
                    )
                if tuple(data_arr.shape[1:]) != self.row_shape:
                    raise ValueError(f"data rows have shape {tuple(data_arr.shape[1:])}")
                keys = np.asarray(keys_arr[:rows], dtype=np.uint8)
            except Exception as exc:
                raise self._fail(f"cannot read {seg_dir} ({type(exc).__name__}: {exc})") from exc
            if hashlib.sha256(keys.tobytes()).hexdigest() != keys_sha:
                raise self._fail(f"the keys of {seg_dir} do not match their committed checksum")
            s = len(segments)
            segments.append(seg)
            for r in range(rows):
                index.setdefault(keys[r].tobytes(), (s, r))
        self._index, self._segments = index, segments

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: str) -> bool:
        return bytes.fromhex(key) in self._index

    def contains(self, keys: Sequence[str]) -> np.ndarray:
        """Boolean mask: which content keys are cached."""
        return np.fromiter((bytes.fromhex(k) in self._index for k in keys), bool, len(keys))

    def get(self, keys: Sequence[str]) -> np.ndarray:
        """Rows for ``keys`` (all must be cached), verified against their checksums."""
        out = np.empty((len(keys), *self.row_shape), np.float32)
        by_seg: dict[int, list[tuple[int, int, bytes]]] = {}
        for i, k in enumerate(keys):
            kb = bytes.fromhex(k)
            if kb not in self._index:
                raise KeyError(f"image {k[:12]}... is not in the cache")
            s, r = self._index[kb]
            by_seg.setdefault(s, []).append((i, r, kb))
        for s, items in by_seg.items():
            seg = self._segments[s]
            rows = np.array([r for _, r, _ in items])
            lo, hi = int(rows.min()), int(rows.max()) + 1
            try:
                if hi - lo <= 4 * len(rows):
                    block = np.asarray(seg.array("data")[lo:hi])[rows - lo]
                    checks = np.asarray(seg.array("check")[lo:hi])[rows - lo]
                else:
                    block = np.asarray(seg.array("data").oindex[rows])
                    checks = np.asarray(seg.array("check").oindex[rows])
            except Exception as exc:
                raise self._fail(f"cannot read {seg.path} ({type(exc).__name__}: {exc})") from exc
            for j, (i, _, kb) in enumerate(items):
                if _row_check(kb, block[j]) != checks[j].tobytes():
                    raise self._fail(f"row {items[j][1]} of {seg.path} fails its checksum")
                out[i] = block[j]
        return out

    # ------------------------------------------------------------------ writing
    def writer(self) -> _Writer:
        """A writer owning a new segment; use as a context manager."""
        return _Writer(self)


class _Writer:
    def __init__(self, cache: EmbeddingCache) -> None:
        self.cache = cache
        self.path = cache.kind_dir / f"seg-{uuid.uuid4().hex}"
        self.rows = 0
        self._hash = hashlib.sha256()
        self._data: Any = None
        self._keys: Any = None
        self._check: Any = None

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _open(self) -> None:
        import zarr

        c = self.cache
        self.path.mkdir(parents=True)
        mk = lambda name, shape, chunks, dtype: zarr.create_array(  # noqa: E731
            str(self.path / name), shape=shape, chunks=chunks, dtype=dtype
        )
        self._data = mk("data", (0, *c.row_shape), (c.chunk_rows, *c.row_shape), "float32")
        self._keys = mk("keys", (0, 32), (c.chunk_rows, 32), "uint8")
        self._check = mk("check", (0, 8), (c.chunk_rows, 8), "uint8")

    def append(self, keys: Sequence[str], rows: np.ndarray) -> None:
        """Append ``rows`` for content ``keys`` and commit them atomically."""
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        if rows.shape != (len(keys), *self.cache.row_shape):
            raise ValueError(
                f"rows of shape {rows.shape} do not match {len(keys)} keys x "
                f"{self.cache.row_shape}"
            )
        if not len(keys):
            return
        if self._data is None:
            self._open()
        kb = [bytes.fromhex(k) for k in keys]
        karr = np.frombuffer(b"".join(kb), np.uint8).reshape(len(kb), 32)
        carr = np.frombuffer(
            b"".join(_row_check(k, r) for k, r in zip(kb, rows, strict=True)), np.uint8
        ).reshape(len(kb), 8)
        n0, n1 = self.rows, self.rows + len(kb)
        for arr, new in ((self._data, rows), (self._keys, karr), (self._check, carr)):
            arr.resize((n1, *arr.shape[1:]))
            arr[n0:n1] = new
        self._hash.update(karr.tobytes())
        self.rows = n1
        meta = {
            "rows": n1,
            "keys_sha256": self._hash.hexdigest(),
            "row_shape": list(self.cache.row_shape),
            "fingerprint": self.cache.fingerprint,
            "kind": self.cache.kind,
        }
        atomic_write_text(self.path / "commit.json", json.dumps(meta, sort_keys=True))
        # make the new rows visible to this process's reader too
        idx = self.cache._index
        seg_no = next((i for i, s in enumerate(self.cache._segments) if s.path == self.path), None)
        if seg_no is None:
            self.cache._segments.append(_Segment(self.path, n1))
            seg_no = len(self.cache._segments) - 1
        else:
            self.cache._segments[seg_no].rows = n1
            self.cache._segments[seg_no]._arrays.clear()
        for r, k in enumerate(kb, start=n0):
            idx.setdefault(k, (seg_no, r))

    def close(self) -> None:
        self._data = self._keys = self._check = None


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
