"""Deployment benchmark: latency per crop of the exported test-time model on this machine's CPU, per runtime.

For each model (ResNet-50 BoT baseline at 256x128, 2048-d; OSNet x0.25 at 256x128, 512-d: the smallest published
model the importers read; TransReID's ViT-B/16 at 256x128 with overlapping patches at stride 12, SIE and JPM,
3840-d, as its published models, or at stride 16), the test-time module (``reid.inference.EmbeddingModule``, no
flip) is run by PyTorch, exported with ``reid.export`` and run by the same runners the export verification uses
(onnxruntime's CPU provider; OpenVINO's CPU runtime in f32). Weights are random (latency does not depend on them).
For batch 1 (a tracker's single new crop) and batch 32 (a frame's worth of crops): the median of ``--repeat`` timed
calls after warm-up, per batch and per crop. A model with camera embeddings (SIE) gets camera 0 for every crop,
through the exports' camera input. One JSON line per measurement.

    python -m benchmarks.deploy_bench
    python -m benchmarks.deploy_bench --models resnet50,vit_b16_stride12
    python -m benchmarks.deploy_bench --models osnet_x0_25 --runtimes openvino --batches 1,8
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch

from reid.inference import EmbeddingModule
from reid.config import load_cfg
from reid.export import FORMATS, export_module
from reid.modeling import build_model

from .common import ROOT, device_name, emit, load_average, timed_calls

MODELS = {
    "resnet50": ("configs/Market1501/resnet50_circle.yml", []),
    "osnet_x0_25": ("configs/Market1501/osnet_x1_0.yml", ["MODEL.BACKBONE.NAME", "osnet_x0_25"]),
    "vit_b16_stride12": ("configs/Market1501/vit_transreid_stride.yml", []),
    "vit_b16_stride16": ("configs/Market1501/vit_transreid_stride.yml", ["MODEL.VIT.STRIDE", "[16, 16]"]),
}


def runners(net: torch.nn.Module, size, names, tmp: Path):
    """name -> callable(*inputs) for each runtime."""
    out = {}
    for name in names:
        if name == "pytorch":
            out[name] = net
            continue
        path = export_module(net, name, tmp / f"model{FORMATS[name].suffix}", size, batch=2)
        out[name] = FORMATS[name].load(path)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.deploy_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="resnet50,osnet_x0_25,vit_b16_stride12", help=", ".join(MODELS))
    parser.add_argument("--runtimes", default="pytorch,onnx,openvino")
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--repeat", type=int, default=20, help="timed calls per measurement (median reported)")
    args = parser.parse_args()
    common = {"bench": "deploy", "device": "cpu", "device_name": device_name("cpu"),
              "torch": torch.__version__, "torch_threads": torch.get_num_threads()}
    for model_name in args.models.split(","):
        config, opts = MODELS[model_name]
        cfg = load_cfg(str(ROOT / config), [*opts, "MODEL.BACKBONE.PRETRAIN", "False", "MODEL.DEVICE", "cpu"])
        net = EmbeddingModule(build_model(cfg, num_classes=1, pretrained=False), flip=False).eval()
        size = tuple(cfg.INPUT.SIZE_TEST)
        params = sum(p.numel() for n, p in net.named_parameters() if "classifier" not in n)
        with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
            for runtime, run in runners(net, size, args.runtimes.split(","), Path(tmp)).items():
                for batch in (int(b) for b in args.batches.split(",")):
                    cameras = (torch.zeros(batch, dtype=torch.long),) if net.num_cameras else ()
                    x = (torch.randn(batch, 3, *size), *cameras)
                    dim = int(run(*x).shape[1])
                    timed_calls(lambda: run(*x), 3, "cpu")  # warm-up
                    times, _ = timed_calls(lambda: run(*x), args.repeat if batch == 1 else args.repeat // 4, "cpu")
                    ms = 1000 * statistics.median(times)
                    emit({**common, "model": model_name, "params_m": round(params / 1e6, 2), "input_hw": list(size),
                          "dim": dim, "sie_cameras": net.num_cameras, "runtime": runtime, "batch": batch,
                          "calls": len(times),
                          "ms_per_batch": round(ms, 2), "ms_per_crop": round(ms / batch, 2),
                          "load_avg_1min": load_average()})


if __name__ == "__main__":
    main()
