"""Install reid (distribution reid-toolkit: "reid" on PyPI is another project; the import stays `import reid`):
`pip install -r requirements.txt -e .` (tested pins) or `pip install -e .` (ranges)."""
from pathlib import Path

from setuptools import find_packages, setup

version = {}
exec((Path(__file__).parent / "reid" / "version.py").read_text(), version)  # noqa: S102 - our own file

setup(
    name="reid-toolkit",  # "reid" on PyPI is another project; the import name stays reid
    version=version["__version__"],
    description="Person re-identification toolkit: Circle / Multi-Similarity losses, MGN, fast exact evaluation "
    "and k-reciprocal re-ranking on GPU and CPU.",
    long_description=(Path(__file__).parent / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["reid", "reid.*"]),
    install_requires=[
        "torch>=2.11,<2.15",
        "torchvision>=0.26,<0.30",
        "numpy>=1.23",
        "yacs>=0.1.8",
        "pillow>=9.0",
        "tqdm>=4.60",
        "matplotlib>=3.6",
    ],
    entry_points={
        "console_scripts": [f"reid-{name.replace('_', '-')}=reid.cli.{name}:entry" for name in (
            "train", "test", "visualize", "extract", "search", "export", "convert", "plot_pair_weights", "mot2reid")],
    },
    extras_require={
        "test": ["pytest>=7", "hypothesis>=6"],
        # ONNX export (tools/export.py): the first releases built for NumPy 2 (onnx 1.17, onnxruntime 1.19)
        "export": ["onnx>=1.17", "onnxruntime>=1.19"],
        # reid-export --format openvino (IR written and verified with OpenVINO's CPU runtime)
        "openvino": ["openvino>=2024.0"],
        # reid-extract --index flat|ivfpq|hnsw and reid-search from it (faiss-gpu works too, for CUDA)
        "search": ["faiss-cpu>=1.8"],
        # VIS.TENSORBOARD: training scalars through torch.utils.tensorboard (which needs tensorboard >= 1.15)
        "tensorboard": ["tensorboard>=2.0"],
        # MATLAB files of the releases: CUHK03, GRID, MARS, iLIDS-VID (v5 through SciPy, v7.3 through h5py)
        "datasets": ["scipy>=1.8", "h5py>=3.7"],
    },
)
