"""Using a trained model elsewhere: ``ReIDModel`` (checkpoint -> image embeddings), image listing, feature files
and ranking.

Trackers and search services hold images (files, PIL images, decoded frames), not dataset records and a
training config. ``ReIDModel.from_checkpoint`` rebuilds the model from the config stored in the checkpoint and
``embed`` applies exactly what evaluation applies (the test transform, TEST.FLIP averaging), so an embedding
computed here equals the one ``tools/test.py`` ranks with.
"""
from __future__ import annotations

import json
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from tqdm import tqdm
from yacs.config import CfgNode

import torchvision.transforms.functional as TF

from .checkpoint import load_checkpoint, load_for_inference
from .checkpoint.inference import ConfigLike
from .config import cfg_from_dict, cfg_to_dict
from .data.io import read_image
from .data.transforms import build_test_transform
from .evaluation.distance import iter_distance_blocks
from .evaluation.extract import embed_batch
from .registry import INTERPOLATION_REGISTRY
from .utils.env import resolve_device
from .utils.errors import CheckpointError, ConfigError, DatasetError
from .utils.files import atomic_write, file_sha256
from .checkpoint.zoo import pretrained_checkpoint

ImageLike = Union[str, os.PathLike, Image.Image, np.ndarray]
Images = Union[ImageLike, Sequence[ImageLike], torch.Tensor]
Frame = Union[str, os.PathLike, Image.Image, np.ndarray, torch.Tensor]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class EmbeddingModule(nn.Module):
    """A normalised float batch (B, 3, H, W) -> (B, D) float32 test embeddings, with TEST.FLIP's mirror average.

    Both ``ReIDModel.embed`` and the exported ONNX / TorchScript graphs run this module, so a deployed export
    computes the same numbers as the Python API (before L2 normalisation), and evaluation's own
    ``reid.evaluation.extract.embed_batch``.
    """

    def __init__(self, model: nn.Module, flip: bool) -> None:
        super().__init__()
        self.model = model.eval()
        self.flip = bool(flip)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return embed_batch(self.model, images, self.flip)


class ReIDModel:
    """A trained re-ID model as an image -> embedding function (see ``from_checkpoint`` and ``embed``), with the
    verification threshold of its final evaluation (``threshold``, ``same``)."""

    def __init__(self, model: nn.Module, cfg: CfgNode, device: torch.device, weights: str = "",
                 threshold: Optional[float] = None, threshold_far: Optional[float] = None) -> None:
        self.cfg = cfg
        self.weights = weights  # the checkpoint loaded, recorded in feature files
        self.device = device
        self.model = model.to(device).eval()
        self.net = EmbeddingModule(self.model, cfg.TEST.FLIP)
        self.transform = build_test_transform(cfg)
        # "Same person" when the TEST.METRIC distance is <= threshold: chosen at false-accept rate threshold_far on
        # the first test set by the training run (model_final.pt's ``threshold``); None when the file has none.
        self.threshold = threshold
        self.threshold_far = threshold_far
        self._dim: Optional[int] = None
        self._weights_sha256: Optional[str] = None

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, config: ConfigLike = None, device: str = "auto",
                        opts: Sequence[str] = ()) -> "ReIDModel":
        """Load a checkpoint written by the Trainer (or a bare state dict together with ``config``).

        The model is rebuilt from the config stored in the checkpoint (see ``reid.checkpoint.resolve_config`` for
        ``config`` and ``opts``); classifier weights are not loaded (embedding only), every other weight must fit
        exactly.
        ``device`` is "auto" (CUDA when available), "cpu", "cuda" or "cuda:N". (``reid.checkpoint.
        load_for_inference`` does the loading.)
        """
        target = resolve_device(device)
        state = load_checkpoint(path)
        model, cfg = load_for_inference(path, config, opts, target, state=state)
        threshold = state.get("threshold")
        far = state.get("threshold_far")
        return cls(model, cfg, target, str(Path(path).resolve()), None if threshold is None else float(threshold),
                   None if far is None else float(far))

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, device: str = "auto",
                        cache_dir: Optional[str | os.PathLike] = None, trust_pickle: bool = False) -> "ReIDModel":
        """A published model by zoo name (e.g. "torchreid/osnet_x1_0_msmt17", "fastreid/market_sbs_R50-ibn"; see
        ``reid.checkpoint.zoo.ZOO``) or a local checkpoint path.

        A zoo model is downloaded into ``cache_dir`` (default $REID_HOME/zoo or ~/.cache/reid/zoo), converted once
        (verified against the peer's own model when that is installed) and cached. Offline, the error names the
        URL and the file to save it as. ``trust_pickle`` allows a publisher's file that needs full unpickling.
        """
        return cls.from_checkpoint(pretrained_checkpoint(name_or_path, cache_dir, trust_pickle), device=device)

    @property
    def input_size(self) -> Tuple[int, int]:
        """(height, width) images are resized to: INPUT.SIZE_TEST."""
        return tuple(self.cfg.INPUT.SIZE_TEST)

    @torch.inference_mode()
    def embed(self, images: Images, normalize: bool = True, batch_size: Optional[int] = None,
              num_workers: int = 0, progress: bool = False, to_cpu: bool = True) -> torch.Tensor:
        """Embed images; returns a float32 (N, D) tensor in input order, on the CPU unless ``to_cpu=False``.

        ``images``: one or a list of file paths, PIL images or NumPy H x W x 3 uint8 RGB arrays, or a uint8
        RGB tensor batch (B, 3, H, W) (channels first, as torchvision.io.read_image gives; permute a
        channels-last batch with ``x.permute(0, 3, 1, 2)``). Any size: each image is resized and normalised by
        the test transform of reid/data/transforms.py. Runs in batches of ``batch_size`` (TEST.IMS_PER_BATCH)
        on the model's device; ``max(num_workers, 1)`` threads decode and resize the next batch meanwhile. With
        ``normalize`` (the default) embeddings are L2-normalised, so a dot product is the cosine similarity.
        """
        items = _as_items(images)
        if not items:
            raise DatasetError("embed() got no images; pass at least one path, image or array.")
        batch_size = batch_size or self.cfg.TEST.IMS_PER_BATCH
        chunks = [items[i:i + batch_size] for i in range(0, len(items), batch_size)]
        out: List[torch.Tensor] = []
        with ThreadPoolExecutor(max_workers=max(num_workers, 1)) as pool, \
                tqdm(total=len(items), desc="embedding", unit="img", disable=not progress, dynamic_ncols=True) as bar:
            pending = self._submit(pool, chunks[0])
            for i in range(len(chunks)):
                batch = torch.stack([f.result() for f in pending])
                pending = self._submit(pool, chunks[i + 1]) if i + 1 < len(chunks) else []
                emb = self.net(batch.to(self.device, non_blocking=True))
                if normalize:
                    emb = F.normalize(emb, dim=1)
                out.append(emb.cpu() if to_cpu else emb)
                bar.update(len(batch))
        return torch.cat(out)

    @property
    def embedding_dim(self) -> int:
        """D of the (N, D) embeddings (found once by embedding a blank image)."""
        if self._dim is None:
            self._dim = int(self.embed(np.zeros((*self.input_size, 3), dtype=np.uint8)).shape[1])
        return self._dim

    @property
    def weights_sha256(self) -> str:
        """SHA-256 of the checkpoint file (read once; "" when the model was not loaded from a file)."""
        if self._weights_sha256 is None:
            self._weights_sha256 = file_sha256(self.weights) if self.weights and os.path.isfile(self.weights) else ""
        return self._weights_sha256

    @torch.inference_mode()
    def embed_boxes(self, frame: Frame, boxes_xyxy: Any, normalize: bool = True, batch_size: Optional[int] = None,
                    on_device: Optional[bool] = None, to_cpu: bool = True) -> torch.Tensor:
        """Embed the crops of ``boxes_xyxy`` (N x 4: x1, y1, x2, y2 in pixels, as detectors give them) from one
        RGB ``frame``: an H x W x 3 uint8 array or tensor, a PIL image or an image file path.

        Boxes are clipped to the frame and cover whole pixels (x1, y1 rounded down, x2, y2 up); a box with no area
        inside the frame is an error naming its index. The crops get exactly ``embed``'s preprocessing (the test
        transform on the cropped image). With ``on_device`` (default: when the model is on a GPU) the frame goes
        to the model's device once and each crop is resized there (torchvision's antialiased resize of uint8
        tensors, which follows PIL's within a grey level) instead of in PIL. Returns (N, D) in box order.
        """
        image = _frame_array(frame)
        height, width = image.shape[:2]
        boxes = pixel_boxes(boxes_xyxy, height, width)
        if len(boxes) == 0:
            return torch.zeros(0, self.embedding_dim)
        if on_device is None:
            on_device = self.device.type == "cuda"
        if not on_device:
            arr = image.numpy() if isinstance(image, torch.Tensor) else image
            crops = [np.ascontiguousarray(arr[y1:y2, x1:x2]) for x1, y1, x2, y2 in boxes.tolist()]
            return self.embed(crops, normalize=normalize, batch_size=batch_size, to_cpu=to_cpu)
        pixels = torch.as_tensor(image).to(self.device).permute(2, 0, 1)  # 3 x H x W uint8 on the device
        mean = torch.tensor(self.cfg.INPUT.PIXEL_MEAN, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(self.cfg.INPUT.PIXEL_STD, device=self.device).view(1, 3, 1, 1)
        mode = INTERPOLATION_REGISTRY.get(self.cfg.INPUT.INTERPOLATION)
        size = list(self.input_size)
        out = []
        step = batch_size or self.cfg.TEST.IMS_PER_BATCH
        for start in range(0, len(boxes), step):
            crops = [TF.resize(pixels[:, y1:y2, x1:x2], size, interpolation=mode, antialias=True)
                     for x1, y1, x2, y2 in boxes[start:start + step].tolist()]
            batch = (torch.stack(crops).float() / 255 - mean) / std
            emb = self.net(batch)
            out.append(F.normalize(emb, dim=1) if normalize else emb)
        emb = torch.cat(out)
        return emb.cpu() if to_cpu else emb

    @torch.inference_mode()
    def same(self, a: Any, b: Any, threshold: Optional[float] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Is ``a[i]`` the same person as ``b[i]``? Returns (bool (N,), distances (N,)), on the CPU.

        ``a`` and ``b``: images (anything ``embed`` takes) or (N, D) float embeddings from ``embed(...,
        normalize=False)`` or ``embed``; one of them may hold a single item, compared with every item of the other.
        Distances are TEST.METRIC's, as in evaluation (cosine: 1 - cosine similarity; euclidean: between raw
        embeddings). ``threshold`` defaults to the checkpoint's (``self.threshold``).
        """
        threshold = self.threshold if threshold is None else float(threshold)
        if threshold is None:
            raise CheckpointError(f"{self.weights or 'This model'} stores no verification threshold (a checkpoint "
                                  f"written before thresholds were kept, or by reid-convert). Pass threshold=VALUE, "
                                  f"e.g. verification.threshold of a metrics.json that reid-test wrote for it.")
        ea, eb = self._embeddings(a), self._embeddings(b)
        if len(ea) != len(eb) and 1 not in (len(ea), len(eb)):
            raise DatasetError(f"same(a, b) compares a[i] with b[i]: got {len(ea)} and {len(eb)} items; give lists "
                               f"of equal length, or one item to compare with every other.")
        if self.cfg.TEST.METRIC == "cosine":
            dist = 1 - (F.normalize(ea, dim=1) * F.normalize(eb, dim=1)).sum(1)
        else:
            dist = (ea - eb).norm(dim=1)
        return dist <= threshold, dist

    def _embeddings(self, x: Any) -> torch.Tensor:
        """(N, D) float32 embeddings of images, or the given float embeddings."""
        if isinstance(x, (torch.Tensor, np.ndarray)) and not _is_uint8(x) and x.ndim == 2:
            return torch.as_tensor(x).float().cpu()
        return self.embed(x, normalize=False)

    def _submit(self, pool: ThreadPoolExecutor, chunk: Sequence[Any]) -> List[Future]:
        return [pool.submit(self._preprocess, item) for item in chunk]

    def _preprocess(self, item: Any) -> torch.Tensor:
        return self.transform(_to_pil(item))


def _is_uint8(x: Any) -> bool:
    return x.dtype in (torch.uint8, np.uint8)


def _frame_array(frame: Frame) -> Union[np.ndarray, torch.Tensor]:
    """An H x W x 3 uint8 RGB array (or CPU/GPU tensor) from any accepted frame."""
    if isinstance(frame, (str, os.PathLike)):
        frame = read_image(os.fspath(frame))
    if isinstance(frame, Image.Image):
        return np.asarray(frame.convert("RGB"))
    if isinstance(frame, (np.ndarray, torch.Tensor)) and _is_uint8(frame) and frame.ndim == 3 \
            and frame.shape[2] == 3:
        return frame
    shape = tuple(frame.shape) if hasattr(frame, "shape") else type(frame).__name__
    dtype = getattr(frame, "dtype", "")
    raise DatasetError(f"A frame must be an H x W x 3 uint8 RGB array or tensor, a PIL image or an image path; got "
                       f"{dtype} {shape}. Convert BGR frames (OpenCV) with frame[..., ::-1]; permute a 3 x H x W "
                       f"tensor with frame.permute(1, 2, 0).")


def pixel_boxes(boxes_xyxy: Any, height: int, width: int) -> np.ndarray:
    """(N, 4) int64 pixel boxes x1, y1, x2, y2 (exclusive ends) of ``boxes_xyxy`` clipped to a ``width`` x
    ``height`` frame: x1, y1 rounded down, x2, y2 up. Non-finite boxes and boxes with no area inside the frame
    are a DatasetError naming their indices."""
    boxes = np.asarray(torch.as_tensor(boxes_xyxy).cpu() if isinstance(boxes_xyxy, torch.Tensor) else boxes_xyxy,
                       dtype=np.float64)
    if boxes.size == 0:
        return np.zeros((0, 4), dtype=np.int64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise DatasetError(f"boxes_xyxy must be N x 4 (x1, y1, x2, y2 in pixels), got shape {boxes.shape}.")
    bad = np.flatnonzero(~np.isfinite(boxes).all(1))
    if len(bad):
        raise DatasetError(f"boxes {bad[:10].tolist()} have non-finite coordinates: {boxes[bad[:3]].tolist()}.")
    x1, x2 = np.clip(boxes[:, 0], 0, width), np.clip(boxes[:, 2], 0, width)
    y1, y2 = np.clip(boxes[:, 1], 0, height), np.clip(boxes[:, 3], 0, height)
    empty = np.flatnonzero((x2 <= x1) | (y2 <= y1))
    if len(empty):
        raise DatasetError(f"boxes {empty[:10].tolist()}{' ...' if len(empty) > 10 else ''} have no area inside the "
                           f"{width} x {height} frame (after clipping to it): {boxes[empty[:3]].tolist()}. Boxes are "
                           f"x1, y1, x2, y2 in pixels with x2 > x1 and y2 > y1; drop empty or off-frame detections.")
    return np.stack([np.floor(x1), np.floor(y1), np.ceil(x2), np.ceil(y2)], 1).astype(np.int64)


def _as_items(images: Images) -> List[Any]:
    """Split the accepted inputs into a list of single images (tensor rows stay tensors)."""
    if isinstance(images, torch.Tensor):
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise DatasetError(
                f"A tensor batch must be uint8 RGB of shape (B, 3, H, W); got {images.dtype} {tuple(images.shape)}. "
                f"Permute a channels-last batch with x.permute(0, 3, 1, 2); for already normalised float batches "
                f"call ReIDModel.net(batch) directly."
            )
        return list(images)
    if isinstance(images, (str, os.PathLike, Image.Image, np.ndarray)):
        return [images]
    return list(images)


def _to_pil(item: Any) -> Image.Image:
    """One image of any accepted kind as an RGB PIL image (the form the test transform takes)."""
    if isinstance(item, (str, os.PathLike)):
        return read_image(os.fspath(item))
    if isinstance(item, Image.Image):
        return item if item.mode == "RGB" else item.convert("RGB")
    if isinstance(item, np.ndarray):
        if item.dtype != np.uint8 or item.ndim != 3 or item.shape[2] != 3:
            raise DatasetError(f"A NumPy image must be H x W x 3 uint8 RGB; got {item.dtype} {item.shape}. "
                               f"Convert BGR frames (OpenCV) with arr[..., ::-1].")
        return Image.fromarray(np.ascontiguousarray(item))
    if isinstance(item, torch.Tensor):
        if item.dtype != torch.uint8 or item.dim() != 3 or item.shape[0] != 3:
            raise DatasetError(f"A tensor image must be uint8 RGB of shape (3, H, W); got {item.dtype} "
                               f"{tuple(item.shape)}.")
        return Image.fromarray(item.permute(1, 2, 0).contiguous().cpu().numpy())
    raise DatasetError(f"Cannot embed an object of type {type(item).__name__}; pass file paths, PIL images, "
                       f"H x W x 3 uint8 arrays or a uint8 (B, 3, H, W) tensor.")


# -- image folders and lists ------------------------------------------------------------------------------------
def list_images(source: str | os.PathLike) -> Tuple[List[str], List[str]]:
    """(paths to read, names to store) for a folder (searched recursively) or a text file listing images.

    Names are paths relative to the folder (POSIX separators), or the lines of the list as written; relative
    lines are read relative to the list file's folder. Blank lines and lines starting with '#' are skipped.
    """
    src = Path(source)
    if src.is_dir():
        found = sorted(p for p in src.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if not found:
            raise DatasetError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) found under {str(src)!r} (searched "
                               f"recursively). Point --input at the folder holding the images, or at a text file "
                               f"listing one image path per line.")
        return [str(p) for p in found], [p.relative_to(src).as_posix() for p in found]
    if not src.is_file():
        raise DatasetError(f"Input {str(src)!r} does not exist; give a folder of images or a text file listing "
                           f"one image path per line.")
    try:
        lines = src.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise DatasetError(f"Input {str(src)!r} is not a UTF-8 text file; give a folder of images or a text file "
                           f"listing one image path per line.") from None
    names = [s for s in (line.strip() for line in lines) if s and not s.startswith("#")]
    if not names:
        raise DatasetError(f"The list {str(src)!r} names no images; write one image path per line.")
    paths = [str(src.parent / n) for n in names]
    missing = [n for n, p in zip(names, paths) if not os.path.isfile(p)]
    if missing:
        raise DatasetError(f"{len(missing)} of {len(names)} images listed in {str(src)!r} do not exist, e.g. "
                           f"{missing[:3]} (relative lines are read relative to {str(src.parent)!r}).")
    return paths, names


# -- feature files ----------------------------------------------------------------------------------------------
@dataclass
class FeatureFile:
    """Embeddings with their image names and how they were made: the checkpoint (path and SHA-256), the resolved
    config as JSON and the checkpoint's verification threshold (NaN when it has none)."""

    features: np.ndarray
    names: List[str]
    normalized: bool
    weights: str = ""
    cfg_json: str = ""
    weights_sha256: str = ""
    threshold: float = float("nan")

    @classmethod
    def of(cls, model: "ReIDModel", features: torch.Tensor, names: Sequence[str], normalized: bool) -> "FeatureFile":
        """Features embedded by ``model``, recording its checkpoint and config so queries can be embedded alike."""
        return cls(features.float().cpu().numpy(), list(names), normalized, model.weights,
                   json.dumps(cfg_to_dict(model.cfg), sort_keys=True), model.weights_sha256,
                   float("nan") if model.threshold is None else float(model.threshold))

    def save(self, path: str | os.PathLike) -> Path:
        """Write an .npz of plain arrays (readable with ``np.load(allow_pickle=False)``), at exactly ``path``,
        atomically (a temporary file, then a rename: an index beside it never sees half a gallery)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as f:  # a file object: np.savez would append ".npz" to a path lacking it
            np.savez(f, features=self.features.astype(np.float32), names=np.asarray(self.names, dtype=np.str_),
                     normalized=np.bool_(self.normalized), weights=np.str_(self.weights),
                     cfg=np.str_(self.cfg_json), weights_sha256=np.str_(self.weights_sha256),
                     threshold=np.float64(self.threshold))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FeatureFile":
        path = Path(path)
        if not path.is_file():
            raise DatasetError(f"Feature file {str(path)!r} does not exist; write one with tools/extract.py.")
        try:
            with np.load(path, allow_pickle=False) as data:
                extra = {k: str(data[k]) for k in ("weights", "cfg", "weights_sha256") if k in data.files}
                out = cls(data["features"].astype(np.float32), [str(n) for n in data["names"]],
                          bool(data["normalized"]) if "normalized" in data.files else False,
                          extra.get("weights", ""), extra.get("cfg", ""), extra.get("weights_sha256", ""),
                          float(data["threshold"]) if "threshold" in data.files else float("nan"))
        except (OSError, ValueError, KeyError) as e:
            raise DatasetError(f"{str(path)!r} is not a feature file written by tools/extract.py (expected an .npz "
                               f"with 'features' and 'names'): {type(e).__name__}: {e}") from None
        if out.features.ndim != 2 or len(out.names) != len(out.features):
            raise DatasetError(f"{str(path)!r}: 'features' must be (N, D) with one name per row; got "
                               f"{out.features.shape} and {len(out.names)} names.")
        return out

    def config(self) -> Optional[CfgNode]:
        """The config the features were extracted with (to embed queries identically), if recorded."""
        return cfg_from_dict(json.loads(self.cfg_json)) if self.cfg_json else None


# -- ranking ----------------------------------------------------------------------------------------------------
def search(query: torch.Tensor, gallery: torch.Tensor, topk: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(cosine distances, gallery indices), each (Q, min(topk, G)), nearest first.

    Distances are computed a block of query rows at a time, so a large query x gallery matrix is never built.
    """
    if topk < 1:
        raise ConfigError(f"topk must be >= 1, got {topk}.")
    k = min(topk, gallery.shape[0])
    best = [torch.topk(block, k, dim=1, largest=False) for _, block in iter_distance_blocks(query, gallery, "cosine")]
    return torch.cat([b.values for b in best]), torch.cat([b.indices for b in best])
