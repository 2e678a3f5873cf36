"""``Gallery``: a gallery feature file with its FAISS index, searched and grown by the rules of ``reid-search`` and
``reid-extract --append`` (both commands are thin callers of this class).

- ``Gallery.open(path, index="auto")`` reads the file and its index: ``"auto"`` the index beside it
  (``gallery.index.npz``) when there is one, ``"exact"`` none, or the path of an index file. An index that was not
  built from this gallery is refused.
- ``search(queries, k, aqe=..., threshold=...)`` ranks the gallery for (Q, D) embeddings, or for images, which are
  embedded with the checkpoint and the config recorded in the file (``query_model``), so resizing, TEST.FLIP and
  normalisation match the gallery's. Distances are cosine distances, exact also when an index finds the candidates.
- Queries are checked against the gallery's record: a query feature file (``FeatureFile``) or a query checkpoint of
  another model (by SHA-256), or other embedding settings, is refused: its distances to the gallery mean nothing.
- ``Gallery.extract(path, model, images, names)`` writes a new gallery (``overwrite=True`` to replace one);
  ``append(model, images, names)`` adds images to one, refusing another checkpoint (by SHA-256), other embedding
  settings, another dimension or normalisation, and names already there. Both check everything (the index beside
  the file included) before embedding, compute the new index in memory, and only then write the file and the index,
  each atomically; the index beside the file is kept in step (extended, built, removed with the gallery it
  described, or reported stale). With DATASETS.SKIP_UNREADABLE (of the model's config), image files that cannot be
  decoded are skipped and listed in ``skipped`` instead of stopping the extraction.
"""
from __future__ import annotations

import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..checkpoint import load_checkpoint, stored_threshold
from ..config import cfg_to_dict, get_cfg
from ..config.changes import flat_items
from ..data.io import image_problem
from ..evaluation.distance import check_pair
from ..evaluation.query_expansion import expand_queries
from ..inference import ReIDModel
from ..inference.cameras import Cameras
from ..inference.images import Images, as_image_list, is_embeddings
from ..utils.errors import CheckpointError, ConfigError, DatasetError
from .exact import search as exact_search
from .features import FeatureFile
from .index import GalleryIndex, build_index, check_buildable, check_kind, check_nprobe, index_path, stored_kind

Threshold = Union[None, float, str]  # None: keep every match; a cosine distance; "auto": the checkpoint's


@dataclass(frozen=True)
class Match:
    """One gallery item found for a query: its 1-based rank, name and cosine distance."""

    rank: int
    name: str
    distance: float


@dataclass(frozen=True)
class SearchResult:
    """The ``k`` nearest gallery items of each query, nearest first, and the threshold that filters them."""

    distances: torch.Tensor  # (Q, k) cosine distances
    indices: torch.Tensor  # (Q, k) gallery rows; -1 where an index found fewer than k
    names: Sequence[str]  # the gallery's names
    threshold: Optional[float]  # "same person" when distance <= threshold; None keeps every match

    def __len__(self) -> int:
        return len(self.distances)

    def matches(self, query: int) -> List[Match]:
        """The matches of query ``query``: the rows found and, with a threshold, within it."""
        pairs = zip(self.distances[query].tolist(), self.indices[query].tolist())
        return [Match(r + 1, self.names[j], d) for r, (d, j) in enumerate(pairs)
                if j >= 0 and (self.threshold is None or d <= self.threshold)]


@dataclass(frozen=True)
class IndexChange:
    """What ``extract`` / ``append`` did to the index file beside the gallery."""

    action: str  # "added" (extended), "built", "removed" (the replaced gallery's), "stale" (left there), "" (none)
    path: Path
    kind: str = ""
    count: int = 0


class Gallery:
    """A gallery feature file (``file``) at ``path`` with the FAISS index it is searched with (``index``, None for
    reid's exact search). ``device`` runs the query model and, with faiss-gpu, flat index searches."""

    def __init__(self, file: FeatureFile, path: Union[str, os.PathLike], index: Optional[GalleryIndex] = None,
                 index_file: Optional[Path] = None, device: str = "auto", index_choice: str = "auto") -> None:
        self.file = file
        self.path = Path(path)
        self.label = os.fspath(path)  # the path as given, for messages
        self.index = index
        self.index_file = index_file
        self.index_choice = index_choice  # "exact" stays exact after an append
        self.device = device
        self.index_change = IndexChange("", index_path(self.path))
        self.skipped: List[Tuple[str, str]] = []  # (name, problem) of images extract / append skipped as unreadable
        self._models: Dict[str, ReIDModel] = {}

    @classmethod
    def open(cls, path: Union[str, os.PathLike], index: str = "auto", device: str = "auto") -> "Gallery":
        """Read a feature file written by reid-extract (or ``extract``) and the index it is searched with."""
        gallery = cls(FeatureFile.load(path), path, device=device, index_choice=index)
        if index == "exact":
            return gallery
        file = index_path(gallery.path) if index == "auto" else Path(index)
        if index == "auto" and not file.is_file():
            return gallery
        gallery.index = GalleryIndex.load(file, gallery.features, gallery.names, repr(gallery.label))
        gallery.index_file = file
        return gallery

    @staticmethod
    def check_new(path: Union[str, os.PathLike], overwrite: bool = False) -> None:
        """Refuse to extract into ``path`` when a file is there, unless ``overwrite`` (reid-extract checks this
        before it loads the model)."""
        path = Path(path)
        if path.exists() and not overwrite:
            try:
                with np.load(path, allow_pickle=False) as data:
                    held = f"a gallery of {len(data['names']):,} embeddings"
            except Exception:  # noqa: BLE001 - whatever the file is, it is not replaced without --overwrite
                held = "a file that is not a readable gallery"
            raise DatasetError(f"{str(path)!r} already holds {held}; extracting would replace it. Add the new images "
                               f"to it with --append, write to another --output, or replace it with --overwrite "
                               f"(overwrite=True), which also removes the FAISS index of the replaced gallery.")

    @classmethod
    def extract(cls, path: Union[str, os.PathLike], model: ReIDModel, images: Images,
                names: Optional[Sequence[str]] = None, *, normalize: bool = True, index: Optional[str] = None,
                batch_size: Optional[int] = None, num_workers: int = 0, progress: bool = False,
                overwrite: bool = False, skip_unreadable: Optional[bool] = None, cameras: Cameras = None) -> "Gallery":
        """Embed ``images`` (file paths, or any images ``ReIDModel.embed`` takes, with ``names``; names default to
        the paths) into a new feature file at ``path``; a file there is refused unless ``overwrite`` (then the index
        beside it, which described the replaced gallery, is removed). ``index`` (flat, ivfpq, hnsw) also writes a
        FAISS index beside it. ``skip_unreadable`` (default: the model's DATASETS.SKIP_UNREADABLE) skips image files
        that cannot be decoded (listed in ``skipped``, their cameras dropped with them). ``cameras``: the images'
        0-based cameras, for a model with camera embeddings (``ReIDModel.embed``). ``index_change`` says what
        happened to the index file."""
        names = _names(images, names)
        cls.check_new(path, overwrite)
        replaced = Path(path).exists()
        if index not in (None, "exact"):
            check_kind(index)
        images, names, cameras, skipped = _readable(images, names, cameras, _skipping(model, skip_unreadable),
                                                     num_workers)
        if index not in (None, "exact"):
            check_buildable(index, len(names))
        feats = model.embed(images, normalize=normalize, batch_size=batch_size, num_workers=num_workers,
                            progress=progress, cameras=cameras)
        gallery = cls(FeatureFile.of(model, feats, names, normalize), path, device=str(model.device))
        gallery.skipped = skipped
        gallery._models[model.weights] = model  # queries are embedded by the model that embedded the gallery
        new_index, action = gallery._next_index(index, None, 0, model.device.type, replaced)
        gallery.file.save(gallery.path)
        gallery._save_index(new_index, action)
        return gallery

    @property
    def names(self) -> List[str]:
        return self.file.names

    @property
    def features(self) -> np.ndarray:
        """(N, D) float32, as stored (L2-normalised unless extracted with normalize=False)."""
        return self.file.features

    @property
    def dim(self) -> int:
        return int(self.file.features.shape[1])

    def __len__(self) -> int:
        return len(self.file.names)

    # -- search ------------------------------------------------------------------------------------------------
    def search(self, queries: Any, k: int = 10, aqe: bool = False, threshold: Threshold = None,
               nprobe: Optional[int] = None, cameras: Cameras = None) -> SearchResult:
        """The ``k`` nearest gallery items of each query.

        ``queries``: (Q, D) float embeddings (tensor or array), a query ``FeatureFile`` (checked by
        ``check_queries``), or images (anything ``ReIDModel.embed`` takes), embedded by ``query_model()``.
        ``aqe``: alpha query expansion of the queries with their nearest gallery items (TEST.AQE of the gallery's
        config; through the index when there is one). ``threshold``: keep only
        matches at a distance <= it; ``"auto"`` is the checkpoint's verification threshold (``resolve_threshold``).
        ``nprobe``: IVF-PQ cells to scan (default: the index's); refused for any other search, which would ignore it.
        ``cameras``: the query images' 0-based cameras, for a model with camera embeddings (``ReIDModel.embed``).
        """
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}.")
        check_nprobe(self.index.kind if self.index is not None else "exact", nprobe)
        threshold = self.resolve_threshold(threshold)
        if isinstance(queries, FeatureFile):
            self.check_queries(queries)
            queries = queries.features
        q = torch.as_tensor(queries).float().cpu() if is_embeddings(queries) else \
            self.query_model().embed(queries, cameras=cameras)
        g = torch.from_numpy(self.features)
        check_pair(q, g)
        overrides = {"nprobe": nprobe} if nprobe is not None else {}
        if aqe:
            q = self._expand(q, g, overrides)
        if self.index is None:
            dist, idx = exact_search(q, g, k)
        else:
            dist, idx = self.index.search(q, self.features, k, self.device, **overrides)
        return SearchResult(dist, idx, self.names, threshold)

    def resolve_threshold(self, threshold: Threshold) -> Optional[float]:
        """None (no filtering), a given distance, or for ``"auto"`` the verification threshold the checkpoint's
        training run chose at TEST.VERIFY_FAR, as recorded in the file (or, for a file written before thresholds
        were recorded, in the checkpoint it names)."""
        if threshold is None:
            return None
        if not isinstance(threshold, str):
            return float(threshold)
        if threshold != "auto":
            raise ConfigError(f"threshold must be None, a distance or 'auto'; got {threshold!r}.")
        value = self.file.threshold
        if math.isnan(value) and self.file.weights and os.path.isfile(self.file.weights):
            value = stored_threshold(load_checkpoint(self.file.weights))[0]
        if value is None or math.isnan(value):
            weights = self.file.weights or "none"
            raise CheckpointError(f"--threshold auto: the checkpoint of {self.label!r} ({weights}) "
                                  f"stores no verification threshold (written before thresholds were kept, converted "
                                  f"from another toolkit, or never evaluated by reid-train). Pass --threshold VALUE, "
                                  f"e.g. verification.threshold of the metrics.json that reid-test writes for it.")
        cfg = self.file.config()
        if cfg is not None and cfg.TEST.METRIC != "cosine":
            raise CheckpointError(f"--threshold auto: the checkpoint's threshold is a {cfg.TEST.METRIC} distance but "
                                  f"reid-search ranks by cosine distance; pass --threshold VALUE.")
        return float(value)

    def query_model(self, weights: Optional[Union[str, os.PathLike]] = None) -> ReIDModel:
        """The model that embeds query images: the checkpoint recorded in the file, or ``weights`` (another
        checkpoint of the same model), with the file's config, on ``device``; loaded once."""
        weights = weights or self.file.weights
        if not weights:
            raise CheckpointError(f"{self.label!r} records no checkpoint; pass --weights CKPT to embed the queries.")
        key = str(Path(weights).resolve())
        if key not in self._models:
            model = ReIDModel.from_checkpoint(weights, config=self.file.config(), device=self.device)
            problem = _other_checkpoint(self.file, model.weights_sha256, model.weights)
            if problem:
                raise CheckpointError(f"--weights {os.fspath(weights)!r} is not the checkpoint that embedded "
                                      f"{self.label!r} ({problem}): distances between embeddings of two models "
                                      f"mean nothing. Pass the gallery's checkpoint, or extract the gallery again "
                                      f"with this one.")
            self._models[key] = model
        return self._models[key]

    def check_queries(self, queries: FeatureFile, label: str = "the query features") -> None:
        """Refuse query features of another checkpoint (by SHA-256, else by path) or other embedding settings
        than the gallery's, as recorded in both files; features that record neither are taken as given."""
        problem = _other_checkpoint(self.file, queries.weights_sha256, queries.weights)
        if problem:
            raise CheckpointError(f"{label} were embedded with another checkpoint than {self.label!r} ({problem}): "
                                  f"distances between embeddings of two models mean nothing. Extract the queries "
                                  f"with the gallery's checkpoint ({self.file.weights or 'see its weights entry'}).")
        keys = _differing_settings(self.file.cfg_json, queries.cfg_json)
        if keys:
            raise CheckpointError(f"{label} were embedded with other settings than {self.label!r} "
                                  f"({', '.join(keys[:5])} differ); extract them with the gallery's --config and "
                                  f"overrides.")

    def _expand(self, q: torch.Tensor, g: torch.Tensor, overrides: Dict[str, int]) -> torch.Tensor:
        aqe = (self.file.config() or get_cfg()).TEST.AQE  # the gallery's TEST.AQE, or the defaults without a config
        index = self.index

        def neighbours(rows: torch.Tensor, k: int) -> Tuple[torch.Tensor, torch.Tensor]:  # as (similarities, rows)
            dist, idx = index.search(rows, self.features, k, self.device, **overrides)
            return 1 - dist, idx

        return expand_queries(q, g, aqe.QE_TIME, aqe.QE_K, aqe.ALPHA, neighbours=None if index is None else neighbours)

    # -- growing -----------------------------------------------------------------------------------------------
    def append(self, model: ReIDModel, images: Images, names: Optional[Sequence[str]] = None, *,
               normalize: Optional[bool] = None, index: Optional[str] = None, batch_size: Optional[int] = None,
               num_workers: int = 0, progress: bool = False, skip_unreadable: Optional[bool] = None,
               cameras: Cameras = None) -> None:
        """Embed only ``images`` and add them to the file (rewritten atomically) and to the index beside it, without
        re-embedding or re-training anything; ``index`` (a kind) rebuilds the index as that kind instead, "exact"
        leaves it (reported stale). ``normalize`` defaults to the gallery's; ``skip_unreadable`` and ``cameras`` as
        in ``extract``.

        Refused before any embedding or writing: another checkpoint (by SHA-256; the same weights under another
        name are the same checkpoint), other embedding settings (MODEL except DEVICE / WEIGHTS, INPUT, TEST.FLIP),
        another normalisation or dimension, names already in the gallery, an index beside the file that is damaged
        or not built from it, and an index kind too few vectors cannot train. The grown index is computed before
        the file is written, so a failure leaves gallery and index as they were.
        """
        names = _names(images, names)
        normalize = self.file.normalized if normalize is None else normalize
        self._check_append(model, names, normalize)
        if index not in (None, "exact"):
            check_kind(index)
        extend = self._index_to_extend(index)  # read and checked against the gallery before any work
        images, names, cameras, skipped = _readable(images, names, cameras, _skipping(model, skip_unreadable),
                                                     num_workers)
        if extend is None and index not in (None, "exact"):
            check_buildable(index, len(self) + len(names))
        feats = model.embed(images, normalize=normalize, batch_size=batch_size, num_workers=num_workers,
                            progress=progress, cameras=cameras)
        grown = FeatureFile.of(model, feats, names, normalize)
        grown.features = np.concatenate([self.features, grown.features])
        grown.names = self.names + grown.names
        old, self.file = self.file, grown
        try:
            new_index, action = self._next_index(index, extend, len(names), model.device.type)
        except BaseException:
            self.file = old
            raise
        grown.save(self.path)
        self.skipped = skipped
        self._save_index(new_index, action)

    def _check_append(self, model: ReIDModel, names: Sequence[str], normalize: bool) -> None:
        old, label = self.file, self.label
        if _other_checkpoint(old, model.weights_sha256, model.weights):
            raise CheckpointError(f"--append: {label!r} was extracted with another checkpoint ({old.weights!r}); "
                                  f"embeddings of two models cannot be compared. Use --weights {old.weights} or "
                                  f"extract a new gallery.")
        keys = _differing_settings(old.cfg_json, json.dumps(cfg_to_dict(model.cfg)))
        if keys:
            raise CheckpointError(f"--append: {label!r} was extracted with other settings ({', '.join(keys[:5])} "
                                  f"differ); pass the same --config and overrides as for the gallery.")
        if old.normalized != normalize:
            raise DatasetError(f"--append: {label!r} holds {'L2-normalised' if old.normalized else 'raw'} features; "
                               f"{'drop' if old.normalized else 'add'} --no-normalize.")
        twice = sorted(set(old.names) & set(names))
        if twice:
            raise DatasetError(f"--append: {len(twice)} images are already in {label!r}, e.g. {twice[:3]}; remove "
                               f"them from --input.")
        if model.embedding_dim != self.dim:
            raise DatasetError(f"--append: the model embeds {model.embedding_dim}-d features but {label!r} holds "
                               f"{self.dim}-d ones; extract into a new file.")

    def _index_to_extend(self, kind: Optional[str]) -> Optional[GalleryIndex]:
        """The index beside the file when ``kind`` keeps it (None or its own kind), checked against the gallery."""
        beside = index_path(self.path)
        if not beside.is_file():
            return None
        loaded = self.index if self.index_file is not None and self.index_file.resolve() == beside.resolve() \
            else None
        if kind not in (None, loaded.kind if loaded is not None else stored_kind(beside)):
            return None
        if loaded is not None:
            return loaded
        return GalleryIndex.load(beside, self.features, self.names, f"{str(self.path)!r} before appending")

    def _next_index(self, kind: Optional[str], extend: Optional[GalleryIndex], appended: int, device: str,
                    replaced: bool = False) -> Tuple[Optional[GalleryIndex], str]:
        """The index of the grown or new gallery (in memory, nothing written) and what saving it does: ``extend``
        with the last ``appended`` rows ("added"), an index of ``kind`` ("built"), or none: the index beside the
        file is removed when it described a ``replaced`` gallery, else left stale."""
        if extend is not None:
            extend.add(self.features[-appended:], self.features, self.names)
            return extend, "added"
        if kind not in (None, "exact"):
            return build_index(self.features, self.names, kind, device), "built"
        if not index_path(self.path).is_file():
            return None, ""
        return None, "removed" if replaced else "stale"

    def _save_index(self, index: Optional[GalleryIndex], action: str) -> None:
        """Write (or remove) the index beside the file as :meth:`_next_index` decided; after the file is written."""
        beside = index_path(self.path)
        if index is not None:
            index.save(beside)
        elif action == "removed":
            beside.unlink()
        self.index_change = IndexChange(action, beside, index.kind if index else "", index.count if index else 0)
        keep = index is not None and self.index_choice != "exact"
        self.index, self.index_file = (index, beside) if keep else (None, None)


def _names(images: Images, names: Optional[Sequence[str]]) -> List[str]:
    """One name per image: ``names``, or the images' paths."""
    items = as_image_list(images)
    if names is None:
        if not all(isinstance(i, (str, os.PathLike)) for i in items):
            raise DatasetError("Names are needed for images that are not file paths: pass names=[...], one per image.")
        return [os.fspath(i) for i in items]
    if len(names) != len(items):
        raise DatasetError(f"Got {len(names)} names for {len(items)} images; give one name per image.")
    return list(names)


def _skipping(model: ReIDModel, skip_unreadable: Optional[bool]) -> bool:
    return bool(model.cfg.DATASETS.SKIP_UNREADABLE) if skip_unreadable is None else skip_unreadable


def _readable(images: Images, names: List[str], cameras: Cameras, skip: bool, workers: int
              ) -> Tuple[Images, List[str], Cameras, List[Tuple[str, str]]]:
    """With ``skip``, the images whose files decode (each file is decoded once more for this check, in
    ``workers`` threads), their names and cameras (one per image, or one for all), and (name, problem) of the
    others; else everything as given."""
    if not skip:
        return images, names, cameras, []
    items = as_image_list(images)
    check = lambda item: image_problem(os.fspath(item)) if isinstance(item, (str, os.PathLike)) else ""  # noqa: E731
    with ThreadPoolExecutor(max(1, workers)) as pool:  # PIL decodes without the GIL
        problems = list(pool.map(check, items))
    keep = [i for i, problem in enumerate(problems) if not problem]
    if not keep:
        raise DatasetError(f"All {len(items)} images are unreadable and were skipped (DATASETS.SKIP_UNREADABLE), e.g. "
                           f"{names[0]!r} {problems[0]}; nothing is left to embed.")
    skipped = [(names[i], problem) for i, problem in enumerate(problems) if problem]
    if cameras is not None and not isinstance(cameras, int):
        per_image = list(cameras.tolist() if hasattr(cameras, "tolist") else cameras)
        if len(per_image) == len(items):  # a wrong count is ReIDModel.embed's to report, with its message
            cameras = [per_image[i] for i in keep]
    return [items[i] for i in keep], [names[i] for i in keep], cameras, skipped


def _other_checkpoint(recorded: FeatureFile, sha256: str, weights: str) -> str:
    """Why embeddings of the checkpoint (``sha256``, ``weights`` path) cannot be compared with ``recorded``'s,
    or "": compared by SHA-256 when both are known, else by path (files written before hashes were kept); when
    either side records neither, nothing can be told and nothing is refused."""
    if recorded.weights_sha256 and sha256:
        if recorded.weights_sha256 != sha256:
            return f"SHA-256 {sha256[:12]}... vs the gallery's {recorded.weights_sha256[:12]}..."
        return ""
    if recorded.weights and weights and recorded.weights != weights:
        return f"{weights} vs the gallery's {recorded.weights}"
    return ""


def _differing_settings(cfg_json: str, other_json: str) -> List[str]:
    """The embedding settings (``_embedding_settings``) in which two recorded configs (JSON) differ; [] when
    either is not recorded."""
    if not cfg_json or not other_json:
        return []
    return _differing(_embedding_settings(json.loads(cfg_json)), _embedding_settings(json.loads(other_json)))


def _embedding_settings(cfg: dict) -> dict:
    """What changes an embedding: the model (not where it runs or its weights file), the input and TEST.FLIP."""
    model = {k: v for k, v in cfg.get("MODEL", {}).items() if k not in ("DEVICE", "WEIGHTS")}
    return {"MODEL": model, "INPUT": cfg.get("INPUT", {}), "TEST": {"FLIP": cfg.get("TEST", {}).get("FLIP")}}


def _differing(a: dict, b: dict) -> List[str]:
    """Dotted keys whose values differ between two nested config dicts, sorted."""
    old, new = dict(flat_items(a)), dict(flat_items(b))
    return sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
