"""``ReIDModel``: a trained checkpoint as an image -> embedding function for trackers and search services.

Trackers and search services hold images (files, PIL images, decoded frames), not dataset records and a
training config. ``ReIDModel.from_checkpoint`` rebuilds the model from the config stored in the checkpoint and
``embed`` applies exactly what evaluation applies (the test-time preprocessing of ``reid.inference.preprocess``,
TEST.FLIP averaging), so an embedding computed here equals the one ``tools/test.py`` ranks with.
"""
from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm
from yacs.config import CfgNode

from ..checkpoint import load_checkpoint, load_for_inference, stored_threshold
from ..checkpoint.inference import ConfigLike
from ..checkpoint.zoo import pretrained_checkpoint
from ..evaluation.extract import embed_batch
from ..modeling.backbones import sie_cameras
from ..utils.env import resolve_device
from ..utils.errors import CheckpointError, DatasetError
from ..utils.files import file_sha256
from .cameras import Cameras, camera_ids
from .images import Frame, Images, as_image_list, frame_array, is_embeddings, pixel_boxes
from .preprocess import Preprocess


class EmbeddingModule(nn.Module):
    """A normalised float batch (B, 3, H, W) -> (B, D) float32 test embeddings, with TEST.FLIP's mirror average;
    ``cameras`` (B,) 0-based, for a model with camera embeddings (``num_cameras`` > 0; others ignore them).

    Both ``ReIDModel.embed`` and the exported ONNX / TorchScript / OpenVINO graphs run this module, so a deployed
    export computes the same numbers as the Python API (before L2 normalisation), and evaluation's own
    ``reid.evaluation.extract.embed_batch``.
    """

    def __init__(self, model: nn.Module, flip: bool) -> None:
        super().__init__()
        self.model = model.eval()
        self.flip = bool(flip)
        self.num_cameras = sie_cameras(model)  # cameras of its SIE table; 0: it takes no cameras

    def forward(self, images: torch.Tensor, cameras: Optional[torch.Tensor] = None) -> torch.Tensor:
        return embed_batch(self.model, images, self.flip, cameras)


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
        self.preprocess = Preprocess(cfg)  # images and boxes alike
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
        return cls(model, cfg, target, str(Path(path).resolve()), *stored_threshold(state))

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

    @property
    def num_cameras(self) -> int:
        """Cameras of the model's camera embedding (SIE; e.g. 6 for a TransReID trained on Market-1501): ``embed``
        and ``embed_boxes`` then need ``cameras``, 0-based ids below this number. 0: the model ignores cameras."""
        return self.net.num_cameras

    @torch.inference_mode()
    def embed(self, images: Images, normalize: bool = True, batch_size: Optional[int] = None,
              num_workers: int = 0, progress: bool = False, to_cpu: bool = True,
              cameras: Cameras = None) -> torch.Tensor:
        """Embed images; returns a float32 (N, D) tensor in input order, on the CPU unless ``to_cpu=False``.

        ``images``: one or a list of file paths, PIL images or NumPy H x W x 3 uint8 RGB arrays, or a uint8
        RGB tensor batch (B, 3, H, W) (channels first, as torchvision.io.read_image gives; permute a
        channels-last batch with ``x.permute(0, 3, 1, 2)``). Any size: each image is resized and normalised by
        the test-time preprocessing (``self.preprocess``). Runs in batches of ``batch_size`` (TEST.IMS_PER_BATCH)
        on the model's device; ``max(num_workers, 1)`` threads decode and resize the next batch meanwhile. With
        ``normalize`` (the default) embeddings are L2-normalised, so a dot product is the cosine similarity.
        ``cameras``: each image's 0-based camera (a sequence, array or tensor), or one int for all, required by a
        model with camera embeddings (``num_cameras`` > 0) and ignored by the others.
        """
        items = as_image_list(images)
        if not items:
            raise DatasetError("embed() got no images; pass at least one path, image or array.")
        cams = camera_ids(cameras, len(items), self.num_cameras)  # checked before any image is decoded
        batch_size = batch_size or self.cfg.TEST.IMS_PER_BATCH
        chunks = [items[i:i + batch_size] for i in range(0, len(items), batch_size)]
        chunk_cameras = [None if cams is None else cams[i:i + batch_size] for i in range(0, len(items), batch_size)]
        out: List[torch.Tensor] = []
        with ThreadPoolExecutor(max_workers=max(num_workers, 1)) as pool, \
                tqdm(total=len(items), desc="embedding", unit="img", disable=not progress, dynamic_ncols=True) as bar:
            pending = self._submit(pool, chunks[0])
            for i in range(len(chunks)):
                batch = torch.stack([f.result() for f in pending])
                pending = self._submit(pool, chunks[i + 1]) if i + 1 < len(chunks) else []
                out.append(self._run(batch, normalize, to_cpu, chunk_cameras[i]))
                bar.update(len(batch))
        return torch.cat(out)

    @property
    def embedding_dim(self) -> int:
        """D of the (N, D) embeddings (found once by embedding a blank image)."""
        if self._dim is None:
            self._dim = int(self.embed(np.zeros((*self.input_size, 3), dtype=np.uint8), cameras=0).shape[1])
        return self._dim

    @property
    def weights_sha256(self) -> str:
        """SHA-256 of the checkpoint file (read once; "" when the model was not loaded from a file)."""
        if self._weights_sha256 is None:
            self._weights_sha256 = file_sha256(self.weights) if self.weights and os.path.isfile(self.weights) else ""
        return self._weights_sha256

    @torch.inference_mode()
    def embed_boxes(self, frame: Frame, boxes_xyxy: Any, normalize: bool = True, batch_size: Optional[int] = None,
                    on_device: Optional[bool] = None, to_cpu: bool = True, cameras: Cameras = None) -> torch.Tensor:
        """Embed the crops of ``boxes_xyxy`` (N x 4: x1, y1, x2, y2 in pixels, as detectors give them) from one
        RGB ``frame``: an H x W x 3 uint8 array or tensor, a PIL image or an image file path.

        Boxes are clipped to the frame and cover whole pixels (x1, y1 rounded down, x2, y2 up); a box with no area
        inside the frame is an error naming its index. The crops get ``embed``'s preprocessing (``self.
        preprocess``): without ``on_device`` they are ``embed``-ed as cropped images; with it (default: when the
        model is on a GPU) the frame goes to the model's device once and each crop is resized there
        (``Preprocess.crop``) instead of in PIL, then normalised alike. Returns (N, D) in box order.
        ``cameras``: as ``embed`` takes them, one per box or one int for the frame's camera.
        """
        image = frame_array(frame)
        height, width = image.shape[:2]
        boxes = pixel_boxes(boxes_xyxy, height, width)
        cams = camera_ids(cameras, len(boxes), self.num_cameras)
        if len(boxes) == 0:
            return torch.zeros(0, self.embedding_dim)
        if on_device is None:
            on_device = self.device.type == "cuda"
        if not on_device:
            arr = image.cpu().numpy() if isinstance(image, torch.Tensor) else image
            crops = [np.ascontiguousarray(arr[y1:y2, x1:x2]) for x1, y1, x2, y2 in boxes.tolist()]
            return self.embed(crops, normalize=normalize, batch_size=batch_size, to_cpu=to_cpu, cameras=cams)
        pixels = torch.as_tensor(image).to(self.device).permute(2, 0, 1)  # 3 x H x W uint8 on the device
        step = batch_size or self.cfg.TEST.IMS_PER_BATCH
        out = []
        for start in range(0, len(boxes), step):
            crops = [self.preprocess.crop(pixels, box) for box in boxes[start:start + step].tolist()]
            out.append(self._run(torch.stack(crops), normalize, False, None if cams is None else
                                 cams[start:start + step]))
        emb = torch.cat(out)
        return emb.cpu() if to_cpu else emb

    @torch.inference_mode()
    def same(self, a: Any, b: Any, threshold: Optional[float] = None, a_cameras: Cameras = None,
             b_cameras: Cameras = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Is ``a[i]`` the same person as ``b[i]``? Returns (bool (N,), distances (N,)), on the CPU.

        ``a`` and ``b``: images (anything ``embed`` takes) or (N, D) float embeddings from ``embed(...,
        normalize=False)`` or ``embed``; one of them may hold a single item, compared with every item of the other.
        Distances are TEST.METRIC's, as in evaluation (cosine: 1 - cosine similarity; euclidean: between raw
        embeddings). ``threshold`` defaults to the checkpoint's (``self.threshold``). ``a_cameras`` / ``b_cameras``:
        the cameras of images ``a`` / ``b``, as ``embed`` takes them (a model with camera embeddings needs them).
        """
        threshold = self.threshold if threshold is None else float(threshold)
        if threshold is None:
            raise CheckpointError(f"{self.weights or 'This model'} stores no verification threshold (a checkpoint "
                                  f"written before thresholds were kept, or by reid-convert). Pass threshold=VALUE, "
                                  f"e.g. verification.threshold of a metrics.json that reid-test wrote for it.")
        ea, eb = self._embeddings(a, a_cameras), self._embeddings(b, b_cameras)
        if len(ea) != len(eb) and 1 not in (len(ea), len(eb)):
            raise DatasetError(f"same(a, b) compares a[i] with b[i]: got {len(ea)} and {len(eb)} items; give lists "
                               f"of equal length, or one item to compare with every other.")
        if self.cfg.TEST.METRIC == "cosine":
            dist = 1 - (F.normalize(ea, dim=1) * F.normalize(eb, dim=1)).sum(1)
        else:
            dist = (ea - eb).norm(dim=1)
        return dist <= threshold, dist

    def _embeddings(self, x: Any, cameras: Cameras) -> torch.Tensor:
        """(N, D) float32 embeddings of images, or the given float embeddings."""
        if is_embeddings(x):
            return torch.as_tensor(x).float().cpu()
        return self.embed(x, normalize=False, cameras=cameras)

    def _submit(self, pool: ThreadPoolExecutor, chunk: Sequence[Any]) -> List[Future]:
        return [pool.submit(self.preprocess.image, item) for item in chunk]

    def _run(self, pixels: torch.Tensor, normalize: bool, to_cpu: bool,
             cameras: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Embeddings of a uint8 batch at INPUT.SIZE_TEST (with its 0-based cameras for an SIE model): normalised on
        the model's device, then the network."""
        if cameras is not None:
            cameras = cameras.to(self.device)
        emb = self.net(self.preprocess.normalize(pixels.to(self.device, non_blocking=True)), cameras)
        if normalize:
            emb = F.normalize(emb, dim=1)
        return emb.cpu() if to_cpu else emb
