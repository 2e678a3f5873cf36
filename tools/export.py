#!/usr/bin/env python
"""Export a checkpoint's test-time model to ONNX or TorchScript and verify the file; the same as `reid-export` (see --help; the code is reid/cli/export.py)."""
from reid.cli.export import entry

if __name__ == "__main__":
    entry()
