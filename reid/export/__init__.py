"""Verified ONNX / TorchScript export of the test-time model (``tools/export.py`` is the command line)."""
from .exporter import (FORMATS, ExportError, Verification, default_output, deployment_metadata, export_checkpoint,
                       export_module, verify_export)

__all__ = ["FORMATS", "ExportError", "Verification", "default_output", "deployment_metadata", "export_checkpoint",
           "export_module", "verify_export"]
