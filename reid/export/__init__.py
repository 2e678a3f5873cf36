"""Verified ONNX / TorchScript / OpenVINO export of the test-time model (``tools/export.py`` is the command
line)."""
from .exporter import (ATOL, FORMATS, HALF_RTOL, RTOL, ExportError, HalfPrecision, Verification, check_output,
                       default_output, deployment_metadata, export_checkpoint, export_module, verify_export)

__all__ = ["ATOL", "FORMATS", "HALF_RTOL", "RTOL", "ExportError", "HalfPrecision", "Verification", "check_output",
           "default_output", "deployment_metadata", "export_checkpoint", "export_module", "verify_export"]
