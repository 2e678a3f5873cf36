"""Nearest-neighbour indexes of a gallery feature file (FAISS), for search in galleries of millions of crops.

``reid-extract --index {flat,ivfpq,hnsw}`` writes one beside the gallery's ``.npz`` (``feats.npz`` ->
``feats.index.npz``); ``reid-search`` answers from it. Kinds:

- ``flat``: exact inner-product search (FAISS ``IndexFlatIP``), the reference;
- ``ivfpq``: an inverted file over ``nlist`` k-means cells with product-quantised codes (Jegou et al. 2011), in
  FAISS's SIMD "fast scan" layout (4-bit codes, ``IndexIVFPQFastScan``): ``nprobe`` cells are scanned (default
  1/16 of them) and the ``refine`` x k best candidates by their codes are re-ranked with the gallery's exact
  features (kept in the .npz, so the index file holds codes only). Recall is set by the share of cells scanned;
  the codes only need to bring the true neighbours into the candidates, so coarse fast codes lose nothing;
- ``hnsw``: a hierarchical navigable small-world graph (``IndexHNSWFlat``, Malkov and Yashunin 2018).

Every kind searches the L2-normalised features by inner product (= cosine similarity) and reports the exact cosine
distances of the neighbours it returns, computed from the gallery's features, so distances read the same as the
exact search's. The file is an .npz of plain arrays (``np.load(allow_pickle=False)``): the serialised index, its
SHA-256 (verified on load: FAISS accepts a damaged graph or code table and silently returns worse neighbours) and
what identifies the gallery it was built for (count, dimension and a SHA-256 of the names and features): an index
that does not match its gallery is refused. ``faiss-cpu`` is an optional extra (``pip install -e '.[search]'``);
with ``faiss-gpu`` and a CUDA device, flat indexes are searched and IVF-PQ cells trained on the GPU.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch

from ..utils.errors import ConfigError, DatasetError
from ..utils.files import atomic_write
from .features import read_npz

KINDS = ("exact", "flat", "ivfpq", "hnsw")  # "exact": no index, reid's exact torch search
SUFFIX = ".index.npz"
IVFPQ_MIN_COUNT = 78  # FAISS's k-means wants >= 39 training vectors per cell, and IVF-PQ here has >= 2 cells
_REBUILD = "Rebuild it with reid-extract --index KIND (or delete it), or search with --index exact."
HNSW_M = 32  # graph degree (FAISS's usual choice for high recall)
DEFAULTS: Dict[str, Dict[str, int]] = {
    "flat": {},
    "ivfpq": {"refine": 10},  # candidates re-ranked = refine x k; nprobe (cells scanned) is set per index
    "hnsw": {"ef_search": 128, "ef_construction": 80},
}


def faiss_module():
    """The faiss module, or a ConfigError saying how to install it."""
    try:
        import faiss
    except ImportError:
        raise ConfigError("A FAISS index (--index flat / ivfpq / hnsw) needs the faiss package: pip install "
                          "faiss-cpu (or faiss-gpu for CUDA), or pip install -e '.[search]'. Without it, use "
                          "--index exact (reid's exact search).") from None
    return faiss


def check_kind(kind: str) -> None:
    """Refuse an unknown index kind, and a missing FAISS, before any work is done."""
    if kind not in DEFAULTS:
        raise ConfigError(f"Unknown index type {kind!r}; choose one of {', '.join(DEFAULTS)} (or search without an "
                          f"index: --index exact).")
    faiss_module()


def index_path(gallery: str | os.PathLike) -> Path:
    """Where the index of a gallery feature file lives: ``feats.npz`` -> ``feats.index.npz``."""
    gallery = Path(gallery)
    stem = gallery.name[:-4] if gallery.name.endswith(".npz") else gallery.name
    return gallery.with_name(stem + SUFFIX)


def check_buildable(kind: str, count: int) -> None:
    """Refuse, before anything is embedded or written, an index of ``kind`` that ``count`` vectors cannot train."""
    if kind == "ivfpq" and count < IVFPQ_MIN_COUNT:
        raise DatasetError(f"An IVF-PQ index needs at least {IVFPQ_MIN_COUNT} gallery vectors to train (got "
                           f"{count}); use --index flat or exact for a gallery this small.")


def stored_kind(path: str | os.PathLike) -> str:
    """The kind of the index saved at ``path`` (read without deserialising the index)."""
    with read_npz(path, "index of reid-extract --index", _REBUILD) as data:
        return str(data["kind"])


def blob_sha256(blob: np.ndarray) -> str:
    """SHA-256 of a serialised index (the bytes FAISS reads back)."""
    return hashlib.sha256(memoryview(np.ascontiguousarray(blob))).hexdigest()  # no copy of a GB-sized index


def fingerprint(features: np.ndarray, names: Sequence[str]) -> str:
    """SHA-256 of a gallery's names and float32 features (what an index must have been built from)."""
    digest = hashlib.sha256()
    digest.update("\n".join(names).encode("utf-8", "surrogatepass"))
    digest.update(np.ascontiguousarray(features, dtype=np.float32).tobytes())
    return digest.hexdigest()


def _normalized(features: np.ndarray) -> np.ndarray:
    feats = np.ascontiguousarray(features, dtype=np.float32)
    norms = np.linalg.norm(feats, axis=1, keepdims=True)
    return feats / np.maximum(norms, 1e-12)


def _gpu(faiss, device: str) -> Optional[Any]:
    """FAISS GPU resources when faiss-gpu is installed and ``device`` asks for CUDA ("auto": when there is one)."""
    if device == "cpu" or not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0:
        return None
    return faiss.StandardGpuResources()


def ivfpq_shape(count: int, dim: int) -> Tuple[int, int, int]:
    """(nlist, m, nprobe) for ``count`` vectors: about 4 sqrt(count) cells with >= 39 training vectors each (FAISS's
    minimum); the most 4-bit sub-quantisers that divide ``dim`` (even; at most 256, dim / 2, and dim / 4 above 256
    dimensions); 1/16 of the cells scanned (at least 32): recall grows with the share of cells scanned, and 1/16
    kept recall@10 near 0.95 on structured features at 200 k (benchmarks/search_bench.py)."""
    nlist = max(1, min(int(4 * math.sqrt(count)), count // 39))
    most = min(256, dim // 2 if dim <= 256 else dim // 4)  # 2-8 dimensions per 4-bit sub-quantiser
    m = max([d for d in range(2, max(2, most) + 1, 2) if dim % d == 0] or [1])
    return nlist, m, min(nlist, max(32, nlist // 16))


def build_faiss_index(features: np.ndarray, kind: str, device: str = "cpu", seed: int = 0):
    """A trained FAISS index of kind ``kind`` holding the L2-normalised ``features`` (CPU index, to be saved)."""
    check_kind(kind)
    faiss = faiss_module()
    feats = _normalized(features)
    count, dim = feats.shape
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "ivfpq":
        check_buildable(kind, count)
        nlist, m, _ = ivfpq_shape(count, dim)
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFPQFastScan(quantizer, dim, nlist, m, 4, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        sample = feats[np.sort(np.random.default_rng(seed).permutation(count)[:max(64 * nlist, 65536)])]
        if _gpu(faiss, device) is not None:  # the cells' k-means on the GPU; the index then keeps them
            kmeans = faiss.Kmeans(dim, nlist, niter=20, seed=seed, gpu=True, spherical=True)
            kmeans.train(sample)
            quantizer.add(kmeans.centroids)
        index.train(sample)
    else:  # hnsw
        index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = DEFAULTS["hnsw"]["ef_construction"]
    index.add(feats)
    return index


@dataclass
class GalleryIndex:
    """A FAISS index of a gallery feature file, checked against it, with its search parameters."""

    kind: str
    index: Any
    count: int
    dim: int
    fingerprint: str
    params: Dict[str, int] = field(default_factory=dict)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the .npz (atomically: a temporary file, then a rename)."""
        faiss = faiss_module()
        path = Path(path)
        blob = faiss.serialize_index(self.index)
        with atomic_write(path) as f:
            np.savez(f, index=blob, index_sha256=np.str_(blob_sha256(blob)), kind=np.str_(self.kind),
                     count=np.int64(self.count), dim=np.int64(self.dim), fingerprint=np.str_(self.fingerprint),
                     params=np.str_(json.dumps(self.params)), faiss_version=np.str_(faiss.__version__))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, features: np.ndarray, names: Sequence[str],
             gallery: str = "the gallery") -> "GalleryIndex":
        """Read an index written by :meth:`save` and check that it was built from ``features`` / ``names``."""
        faiss = faiss_module()
        path = Path(path)
        if not path.is_file():
            raise DatasetError(f"Index file {str(path)!r} does not exist; write one with reid-extract --index "
                               f"ivfpq (or flat, hnsw), or search with --index exact.")
        with read_npz(path, "index of reid-extract --index", _REBUILD) as data:
            blob = data["index"]
            # Files written before the checksum was recorded have none; they are checked against the gallery only.
            recorded = str(data["index_sha256"]) if "index_sha256" in data.files else ""
            if recorded and blob_sha256(blob) != recorded:
                raise DatasetError(f"The index {str(path)!r} is damaged: its bytes no longer have the SHA-256 recorded "
                                   f"when it was written (a partial copy, a disk or transfer error, an edit), and a "
                                   f"damaged index silently returns worse neighbours. {_REBUILD}")
            out = cls(str(data["kind"]), faiss.deserialize_index(blob), int(data["count"]), int(data["dim"]),
                      str(data["fingerprint"]), json.loads(str(data["params"])))
        out.check(features, names, path, gallery)
        return out

    def check(self, features: np.ndarray, names: Sequence[str], path: str | os.PathLike, gallery: str) -> None:
        """Refuse an index built from another gallery (other count, dimension, names or features)."""
        count, dim = features.shape
        if (self.count, self.dim) != (count, dim) or self.index.ntotal != count \
                or self.fingerprint != fingerprint(features, names):
            what = ("count and dimension match but the names or features differ"
                    if (self.count, self.dim) == (count, dim) else
                    f"it holds {self.count} vectors of dimension {self.dim}, {gallery} {count} of dimension {dim}")
            raise DatasetError(f"The index {str(path)!r} was not built from {gallery} ({what}): the gallery was "
                               f"re-extracted or edited after the index was written. Rebuild it with reid-extract "
                               f"--index {self.kind}, or search with --index exact.")

    def add(self, new_features: np.ndarray, features: np.ndarray, names: Sequence[str]) -> None:
        """Add ``new_features`` (the last rows of the grown gallery ``features`` / ``names``) to the index, without
        touching the vectors already in it (an IVF-PQ index keeps its trained cells and codebooks)."""
        self.index.add(_normalized(new_features))
        self.count, self.fingerprint = len(features), fingerprint(features, names)

    def search(self, queries: torch.Tensor, gallery: np.ndarray, k: int, device: str = "cpu",
               **overrides: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """(cosine distances, gallery indices), each (Q, min(k, count)), nearest first: the index's candidates
        re-ranked by their exact distance to ``gallery`` (the features the index was built from)."""
        faiss = faiss_module()
        if queries.shape[1] != self.dim:
            raise DatasetError(f"The queries are {queries.shape[1]}-d but the {self.kind} index holds {self.dim}-d "
                               f"vectors; embed the queries with the gallery's model.")
        check_nprobe(self.kind, overrides.get("nprobe"))
        params = {**DEFAULTS.get(self.kind, {}), **self.params, **overrides}
        k = min(k, self.count)
        index = self.index
        if self.kind == "ivfpq":
            index.nprobe = int(params["nprobe"])
        elif self.kind == "hnsw":
            index.hnsw.efSearch = max(int(params["ef_search"]), k)
        res = _gpu(faiss, device) if self.kind == "flat" else None  # fast-scan and HNSW search on the CPU
        if res is not None:
            index = faiss.index_cpu_to_gpu(res, 0, index)
        q = _unit_rows(queries)
        want = min(self.count, k * int(params.get("refine", 1)))
        _, cand = index.search(q.numpy(), want)
        return rerank(q, gallery, torch.from_numpy(cand), k)


def check_nprobe(kind: str, nprobe: Optional[int]) -> None:
    """Refuse ``nprobe`` (IVF-PQ cells to scan) for a search by another ``kind`` ("exact": no index), where it would
    be ignored, and below 1."""
    if nprobe is None:
        return
    if kind != "ivfpq":
        how = "exactly (no index)" if kind == "exact" else f"with a {kind} index"
        raise ConfigError(f"--nprobe sets how many cells an IVF-PQ index scans, but this gallery is searched {how}; "
                          f"drop --nprobe, or search a gallery extracted with --index ivfpq.")
    if isinstance(nprobe, bool) or not isinstance(nprobe, int) or nprobe < 1:
        raise ConfigError(f"--nprobe must be a whole number of cells >= 1, got {nprobe!r}.")


def build_index(features: np.ndarray, names: Sequence[str], kind: str, device: str = "cpu") -> GalleryIndex:
    """A :class:`GalleryIndex` of kind ``kind`` over a gallery's ``features`` / ``names``."""
    index = build_faiss_index(features, kind, device)
    params = dict(DEFAULTS[kind])
    if kind == "ivfpq":
        params.update(zip(("nlist", "m", "nprobe"), ivfpq_shape(*features.shape)))
    return GalleryIndex(kind, index, len(features), features.shape[1], fingerprint(features, names), params)


def _unit_rows(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x.float().cpu(), dim=1).contiguous()


def rerank(queries: torch.Tensor, gallery: np.ndarray, cand: torch.Tensor,
           k: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` nearest of each query's candidate gallery rows (-1 = none) by exact cosine distance (``queries``
    of unit length; the rows' norms divide their dot products, so no normalised copy of the rows is made)."""
    safe = cand.clamp(min=0)
    rows = torch.from_numpy(np.ascontiguousarray(gallery[safe.reshape(-1).numpy()], dtype=np.float32))
    rows = rows.view(*cand.shape, -1)
    dots = torch.bmm(rows, queries.unsqueeze(2)).squeeze(2)
    dist = 1 - dots / torch.linalg.vector_norm(rows, dim=2).clamp_min(1e-12)
    dist = dist.masked_fill(cand < 0, float("inf"))
    best = torch.topk(dist, min(k, cand.shape[1]), dim=1, largest=False)
    return best.values, cand.gather(1, best.indices)
