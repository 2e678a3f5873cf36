"""The model zoo: published re-ID checkpoints by name, downloaded, converted once and cached.

Names are ``fastreid/<file>`` for fast-reid's model zoo (MODEL_ZOO.md of JDAI-CV/fast-reid, release v0.1.1:
BoT, AGW, SBS, MGN on Market-1501, DukeMTMC-reID, MSMT17) and ``torchreid/<arch>_<training set>`` for torchreid's
(docs/MODEL_ZOO.md of KaiyangZhou/deep-person-reid). The rank-1 / mAP of each entry are the publisher's, on the
listed test set, copied as published; they were not measured here. Neither publisher gives file hashes, so the
SHA-256 of the downloaded file is recorded in the converted checkpoint ("converted_from").

:func:`pretrained_checkpoint` is what ``ReIDModel.from_pretrained`` uses: a zoo name resolves to
``<cache>/<source>/<name>.pt`` (converted on first use from the publisher's file, which is downloaded into the
same folder unless already there); a path to a file is used as it is.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

from tqdm import tqdm

from ..modeling.backbones.osnet import DRIVE_DOWNLOAD
from ..utils.errors import CheckpointError
from .convert import ConversionError, convert_checkpoint, fastreid

FASTREID_RELEASE = "https://github.com/JDAI-CV/fast-reid/releases/download/v0.1.1/{}.pth"
FASTREID_PAGE = "https://github.com/JDAI-CV/fast-reid/blob/master/MODEL_ZOO.md"
TORCHREID_PAGE = "https://kaiyangzhou.github.io/deep-person-reid/MODEL_ZOO"
DRIVE_FILE = "https://drive.google.com/file/d/{}/view?usp=sharing"


@dataclass(frozen=True)
class ZooEntry:
    """One published checkpoint: where it is, how to convert it, what its publisher reports."""

    name: str  # e.g. "torchreid/osnet_x1_0_msmt17"
    source: str  # "fastreid" or "torchreid"
    url: str  # the publisher's link
    trained_on: str
    published: Tuple[Tuple[str, float, float], ...]  # (test set, rank-1 %, mAP %) as published, not measured here
    arch: str = ""  # torchreid: model name
    recipe: str = ""  # fast-reid: Base recipe (bagtricks, AGW, SBS, MGN)
    backbone: str = ""  # fast-reid: R50, R50-ibn, R101-ibn
    sha256: str = ""  # the publisher gives none
    config: Optional[Dict] = None  # TransReID / CLIP-ReID / SOLIDER-REID: the model part of the training YAML

    @property
    def file_name(self) -> str:
        return f"{self.name.split('/', 1)[1]}.pth"

    @property
    def page(self) -> str:
        """The publisher's model-zoo page, where the numbers come from."""
        pages = {"fastreid": FASTREID_PAGE, "torchreid": TORCHREID_PAGE, **TRANSFORMER_PAGES}
        return pages[self.source]

    @property
    def download_url(self) -> str:
        if self.url.startswith("https://drive.google.com/file/d/"):
            return DRIVE_DOWNLOAD.format(self.url.split("/")[5])
        return self.url

    def peer_config(self) -> Optional[Dict]:
        """The peer config to convert with: fast-reid's model-zoo recipe, the YAML content of the transformer
        sources; None for torchreid (an architecture name is enough)."""
        if self.config is not None:
            return self.config
        if self.source != "fastreid":
            return None
        backbone = {"R50": {}, "R50-ibn": {"WITH_IBN": True}, "R101-ibn": {"WITH_IBN": True, "DEPTH": "101x"}}
        return fastreid.recipe(self.recipe, BACKBONE=backbone[self.backbone])


_FASTREID_SETS = {"market": "Market1501", "duke": "DukeMTMC-reID", "msmt": "MSMT17"}
_FASTREID_RECIPES = {"bot": "bagtricks", "agw": "AGW", "sbs": "SBS", "mgn": "MGN"}
# fast-reid MODEL_ZOO.md: (file name, rank-1 %, mAP %) on the training set's own test split
_FASTREID = (
    ("market_bot_R50", 94.4, 86.1), ("market_bot_R50-ibn", 94.9, 87.6), ("market_bot_R101-ibn", 95.4, 88.9),
    ("market_agw_R50", 95.3, 88.2), ("market_agw_R50-ibn", 95.1, 88.7), ("market_agw_R101-ibn", 95.5, 89.5),
    ("market_sbs_R50", 95.4, 88.2), ("market_sbs_R50-ibn", 95.7, 89.3), ("market_sbs_R101-ibn", 96.3, 90.3),
    ("market_mgn_R50-ibn", 95.8, 89.8),
    ("duke_bot_R50", 87.2, 77.0), ("duke_bot_R50-ibn", 89.3, 79.6), ("duke_bot_R101-ibn", 91.2, 81.2),
    ("duke_agw_R50", 89.0, 79.9), ("duke_agw_R50-ibn", 90.5, 80.8), ("duke_agw_R101-ibn", 91.7, 82.3),
    ("duke_sbs_R50", 90.3, 80.3), ("duke_sbs_R50-ibn", 90.8, 81.2), ("duke_sbs_R101-ibn", 91.9, 83.6),
    ("duke_mgn_R50-ibn", 91.1, 82.0),
    ("msmt_bot_R50", 74.1, 50.2), ("msmt_bot_R50-ibn", 77.0, 54.4), ("msmt_bot_R101-ibn", 81.0, 59.4),
    ("msmt_agw_R50", 78.3, 55.6), ("msmt_agw_R50-ibn", 81.2, 59.7), ("msmt_agw_R101-ibn", 82.0, 61.4),
    ("msmt_sbs_R50", 81.8, 58.4), ("msmt_sbs_R50-ibn", 83.9, 60.6), ("msmt_sbs_R101-ibn", 84.8, 62.8),
)
# torchreid docs/MODEL_ZOO.md, same-domain table: arch -> Google Drive ids and "rank-1 (mAP)" for Market1501,
# DukeMTMC-reID, MSMT17 (each trained and tested on that set)
_TORCHREID_SETS = (("market1501", "Market1501"), ("dukemtmcreid", "DukeMTMC-reID"), ("msmt17", "MSMT17"))
_TORCHREID_SAME = {
    "resnet50": (("1dUUZ4rHDWohmsQXCRe2C_HbYkzz94iBV", 87.9, 70.4), ("17ymnLglnc64NRvGOitY3BqMRS9UWd1wg", 78.3, 58.9),
                 ("1ep7RypVDOthCRIAqDnn4_N-UhkkFHJsj", 63.2, 33.9)),
    "resnet50_fc512": (("1kv8l5laX_YCdIGVCetjlNdzKIA3NvsSt", 90.8, 75.3),
                       ("13QN8Mp3XH81GK4BPGXobKHKyTGH50Rtx", 81.0, 64.0),
                       ("1fDJLcz4O5wxNSUvImIIjoaIF9u1Rwaud", 69.6, 38.4)),
    "osnet_x1_0": (("1vduhq5DpN2q1g4fYEZfPI17MJeh9qyrA", 94.2, 82.6), ("1QZO_4sNf4hdOKKKzKc-TZU9WW1v6zQbq", 87.0, 70.2),
                   ("112EMUfBPYeYg70w-syK6V6Mx8-Qb9Q1M", 74.9, 43.8)),
    "osnet_x0_75": (("1ozRaDSQw_EQ8_93OUmjDbvLXw9TnfPer", 93.7, 81.2), ("1IE3KRaTPp4OUa6PGTFL_d5_KQSJbP0Or", 85.8, 69.8),
                    ("1QEGO6WnJ-BmUzVPd3q9NoaO_GsPNlmWc", 72.8, 41.4)),
    "osnet_x0_5": (("1PLB9rgqrUM7blWrg4QlprCuPT7ILYGKT", 92.5, 79.8), ("1KoUVqmiST175hnkALg9XuTi1oYpqcyTu", 85.1, 67.4),
                   ("1UT3AxIaDvS2PdxzZmbkLmjtiqq7AIKCv", 69.7, 37.5)),
    "osnet_x0_25": (("1z1UghYvOTtjx7kEoRfmqSMu-z62J6MAj", 91.2, 75.0), ("1eumrtiXT4NOspjyEV4j8cHmlOaaCGk5l", 82.0, 61.4),
                    ("1sSwXSUlj4_tHZequ_iZ8w_Jh0VaRQMqF", 61.4, 29.5)),
}
# torchreid cross-domain tables: (name, arch, Drive id, trained on, ((tested on, rank-1, mAP), ...))
_M, _D = "Market1501", "DukeMTMC-reID"
_TORCHREID_CROSS = (
    ("osnet_ibn_x1_0_market1501", "osnet_ibn_x1_0", "1uWW7_z_IcUmRNPqQOrEBdsvic94fWH37", _M, ((_D, 48.5, 26.7),)),
    ("osnet_ain_x1_0_market1501", "osnet_ain_x1_0", "14bNFGm0FhwHEkEpYKqKiDWjLNhXywFAd", _M, ((_D, 52.4, 30.5),)),
    ("osnet_ibn_x1_0_dukemtmcreid", "osnet_ibn_x1_0", "1CNxL1IP0BjcE1TSttiVOID1VNipAjiF3", _D, ((_M, 57.7, 26.1),)),
    ("osnet_ain_x1_0_dukemtmcreid", "osnet_ain_x1_0", "1hypJvq8G04SOby6jvF337GEkg5K_bmCw", _D, ((_M, 61.0, 30.6),)),
    *((f"{arch}_msmt17_combineall", arch, drive, "MSMT17 (all images)", ((_M, m1, m2), (_D, d1, d2)))
      for arch, drive, m1, m2, d1, d2 in (
          ("resnet50", "1yiBteqgIZoOeywE8AhGmEQl7FTVwrQmf", 46.3, 22.8, 52.3, 32.1),
          ("osnet_x1_0", "1IosIFlLiulGIjwW3H8uMRmx3MzPwf86x", 66.6, 37.5, 66.0, 45.3),
          ("osnet_x0_75", "1fhjSS_7SUGCioIf2SWXaRGPqIY9j7-uw", 63.6, 35.5, 65.3, 44.5),
          ("osnet_x0_5", "1DHgmb6XV4fwG3n-CnCM0zdL9nMsZ9_RF", 64.3, 34.9, 65.2, 43.3),
          ("osnet_x0_25", "1Kkx2zW89jq_NETu4u42CFZTMVD5Hwm6e", 59.9, 31.0, 61.5, 39.6),
          ("osnet_ibn_x1_0", "1q3Sj2ii34NlfxA4LvmHdWO_75NDRmECJ", 66.5, 37.2, 67.4, 45.6),
          ("osnet_ain_x1_0", "1SigwBE6mPdqiJMqhuIY4aqC7--5CsMal", 70.1, 43.3, 71.1, 52.7),
      )),
)


# Transformers (issue 25): (name, source, Drive id, trained on, ((test set, rank-1, mAP), ...), training YAML).
# TransReID README ("TransReID*": ViT-B/16, stride 12, SIE, JPM, 256 x 128); SOLIDER-REID README (Swin, semantic
# weight 0.2, 384 x 128, without re-ranking); CLIP-ReID README (its table has links only; the one number it gives
# is ViT-CLIP-ReID-SIE-OLP on MSMT17 with re-ranking).
TRANSFORMER_PAGES = {"transreid": "https://github.com/damo-cv/TransReID#trained-models-and-logs",
                     "clipreid": "https://github.com/Syliz517/CLIP-ReID#trained-models-and-test-logs",
                     "solider": "https://github.com/tinyvision/SOLIDER-REID#performance"}
_HALF = {"PIXEL_MEAN": [0.5, 0.5, 0.5], "PIXEL_STD": [0.5, 0.5, 0.5]}
_TRANSREID = {"MODEL": {"NAME": "transformer", "TRANSFORMER_TYPE": "vit_base_patch16_224_TransReID",
                        "STRIDE_SIZE": [12, 12], "SIE_CAMERA": True, "SIE_COE": 3.0, "JPM": True, "RE_ARRANGE": True},
              "INPUT": {"SIZE_TRAIN": [256, 128], "SIZE_TEST": [256, 128], **_HALF},
              "TEST": {"NECK_FEAT": "before", "FEAT_NORM": "yes"}}
_CLIPREID_SIE_OLP = {"MODEL": {"NAME": "ViT-B-16", "STRIDE_SIZE": [12, 12], "SIE_CAMERA": True, "SIE_COE": 1.0},
                     "INPUT": {"SIZE_TRAIN": [256, 128], "SIZE_TEST": [256, 128], **_HALF},
                     "TEST": {"NECK_FEAT": "before", "FEAT_NORM": "yes"}}


def _solider(size: str) -> Dict:
    return {"MODEL": {"NAME": "transformer", "TRANSFORMER_TYPE": f"swin_{size}_patch4_window7_224",
                      "SEMANTIC_WEIGHT": 0.2},
            "INPUT": {"SIZE_TRAIN": [384, 128], "SIZE_TEST": [384, 128], **_HALF},
            "TEST": {"NECK_FEAT": "before", "FEAT_NORM": "yes"}}


_TRANSFORMERS = (
    ("transreid/vit_transreid_stride_msmt17", "transreid", "1x6Na97ycxS0t2Dn_0iRKWe1U5ccIqASK", "MSMT17",
     (("MSMT17", 85.3, 67.8),), _TRANSREID),
    ("transreid/vit_transreid_stride_market1501", "transreid", "11p4RjmpCGGAS-876VEt7OoFrUeHTUlyO", "Market1501",
     (("Market1501", 95.1, 89.0),), _TRANSREID),
    ("clipreid/vit_clipreid_sie_olp_msmt17", "clipreid", "1sPZbWTv2_stXBGutjHMvE87pAbSAgVaz", "MSMT17",
     (("MSMT17 (re-ranked)", 91.1, 86.7),), _CLIPREID_SIE_OLP),
    *((f"solider/swin_{size}_{key}", "solider", drive, title, ((title, rank1, mAP),), _solider(size))
      for size, key, title, drive, rank1, mAP in (
          ("tiny", "msmt17", "MSMT17", "10YLhMbwvmxZl3gTVo2BN_828SKZHdCjr", 85.9, 67.4),
          ("tiny", "market1501", "Market1501", "1YrE_r9Fk5uR0uFFQboBv203vxlOpFXU8", 96.1, 91.6),
          ("small", "msmt17", "MSMT17", "1C-aIZdFyjFsZX4W4feG-Ex39RU2Qvu3b", 90.8, 76.9),
          ("small", "market1501", "Market1501", "14uOCf5yZq0Rt5rRSJI9I7_d5kt2EOyHO", 96.6, 93.3),
          ("base", "msmt17", "MSMT17", "1Y-RFAYdT56vnMjwxH1Ym3DVhZzZuMQZs", 90.7, 77.1),
          ("base", "market1501", "Market1501", "1pZ1unW2IwSsqSN2KYHcgBhgjQztQW_fe", 96.9, 93.9),
      )),
)

def _entries() -> Dict[str, ZooEntry]:
    out = {}
    for file, rank1, mAP in _FASTREID:
        dataset, method, backbone = file.split("_", 2)
        out[f"fastreid/{file}"] = ZooEntry(f"fastreid/{file}", "fastreid", FASTREID_RELEASE.format(file),
                                           _FASTREID_SETS[dataset], ((_FASTREID_SETS[dataset], rank1, mAP),),
                                           recipe=_FASTREID_RECIPES[method], backbone=backbone)
    for arch, rows in _TORCHREID_SAME.items():
        for (key, title), (drive, rank1, mAP) in zip(_TORCHREID_SETS, rows):
            name = f"torchreid/{arch}_{key}"
            out[name] = ZooEntry(name, "torchreid", DRIVE_FILE.format(drive), title, ((title, rank1, mAP),), arch)
    for short, arch, drive, trained_on, published in _TORCHREID_CROSS:
        name = f"torchreid/{short}"
        out[name] = ZooEntry(name, "torchreid", DRIVE_FILE.format(drive), trained_on, published, arch)
    for name, source, drive, trained_on, published, config in _TRANSFORMERS:
        out[name] = ZooEntry(name, source, DRIVE_FILE.format(drive), trained_on, published, config=config)
    return out


ZOO: Dict[str, ZooEntry] = _entries()


def markdown_table() -> str:
    """MODEL_ZOO.md's table of the zoo (a test keeps the file equal to it)."""
    lines = ["| Name | Trained on | Published rank-1 / mAP (%) | File |", "| --- | --- | --- | --- |"]
    for e in ZOO.values():
        numbers = "; ".join(f"{test} {rank1:.1f} / {mAP:.1f}" for test, rank1, mAP in e.published)
        lines.append(f"| `{e.name}` | {e.trained_on} | {numbers} | [{e.source}]({e.url}) |")
    return "\n".join(lines)


def cache_dir() -> Path:
    """Where zoo files live: $REID_HOME/zoo, else ~/.cache/reid/zoo."""
    return Path(os.environ.get("REID_HOME", Path.home() / ".cache" / "reid")) / "zoo"


def download_file(url: str, dest: Path) -> None:
    """Download ``url`` to ``dest`` (through a temporary file, so an interrupted download leaves nothing)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - https
            if "text/html" in response.headers.get("Content-Type", ""):
                raise OSError("the server returned a web page instead of the file (Google Drive asks a browser to "
                              "confirm large downloads)")
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name) as bar:
                for block in iter(lambda: response.read(1 << 20), b""):
                    out.write(block)
                    bar.update(len(block))
        shutil.move(tmp, dest)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _fetch(entry: ZooEntry, raw: Path) -> None:
    try:
        download_file(entry.download_url, raw)
    except Exception as e:  # noqa: BLE001 - offline, HTTP error, timeout, HTML page: the same advice
        raise CheckpointError(
            f"Could not download {entry.name} from {entry.url} ({type(e).__name__}: {e}). Download it in a "
            f"browser and save it as {raw}, then call again (or pass that file's path instead of the name)."
        ) from None


def pretrained_checkpoint(name_or_path: str | os.PathLike, cache: Optional[str | os.PathLike] = None,
                          trust_pickle: bool = False) -> Path:
    """The reid checkpoint for a zoo name (converted once, then cached) or a local checkpoint path."""
    if str(name_or_path) not in ZOO:
        path = Path(name_or_path)
        if path.is_file():
            return path
        near = [n for n in ZOO if str(name_or_path).split("/")[-1] in n][:5]
        raise CheckpointError(f"{str(name_or_path)!r} is neither a file nor a model-zoo name"
                              + (f"; did you mean {', '.join(near)}?" if near else "") + " The names are listed "
                              "in reid.checkpoint.zoo.ZOO and in MODEL_ZOO.md.")
    entry = ZOO[str(name_or_path)]
    folder = Path(cache) if cache is not None else cache_dir()
    folder = folder / entry.source
    converted = folder / f"{entry.name.split('/', 1)[1]}.pt"
    if converted.is_file():
        return converted
    raw = folder / entry.file_name
    if not raw.is_file():
        _fetch(entry, raw)
    report = convert_checkpoint(entry.source, raw, converted, arch=entry.arch or None,
                                peer_config=entry.peer_config(),
                                trust_pickle=trust_pickle)
    check = report.verification
    if check is not None and not check.ok:
        converted.unlink(missing_ok=True)
        what = (f"does not reproduce {check.peer}'s embeddings" if check.peer_finite else
                f"cannot be verified: {check.peer}'s own embeddings are not finite (a damaged file?)")
        raise ConversionError(f"{entry.name} converted from {raw} {what} ({check.line()}); the converted file was "
                              f"removed.")
    return converted
