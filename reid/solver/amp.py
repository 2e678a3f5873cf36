"""Mixed-precision modes (``SOLVER.AMP``): the autocast dtype of each, registered in ``reid.registry``.

"fp16" also needs a GradScaler (its narrow exponent underflows small gradients); bf16 has float32's range.
"""
import torch

from ..registry import AMP_REGISTRY

AMP_REGISTRY.register("off", None)  # full float32
AMP_REGISTRY.register("bf16", torch.bfloat16)
AMP_REGISTRY.register("fp16", torch.float16)
