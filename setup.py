"""darknet_torch: Darknet's .cfg/.weights/.data files in PyTorch, numerically identical to the C Darknet."""
from pathlib import Path

from setuptools import find_packages, setup

EXTRAS = {
    # stb_image decoding: Darknet's own JPEG decoder, so network inputs are bit-identical to the C Darknet's.
    "exact": ["libstb>=0.8"],
    # COCO mAP@[.5:.95] from the same detections.
    "coco": ["pycocotools>=2.0.7"],
    # ONNX export and running it.
    "onnx": ["onnx>=1.15", "onnxruntime>=1.17"],
    # HTTP service (darknet_torch serve): Starlette (ASGI) on uvicorn; python-multipart parses uploads.
    "serve": ["starlette>=0.40", "uvicorn>=0.30", "python-multipart>=0.0.18"],
    # Training's scalars in TensorBoard (torch.utils.tensorboard needs the package); results.csv is written anyway.
    "tensorboard": ["tensorboard>=2.10"],
    # video, cameras and streams (darknet_torch demo): PyAV, whose wheels bundle FFmpeg (decode, encode, FFV1).
    "video": ["av>=12"],
}
EXTRAS["dev"] = sorted({"pytest>=7", *EXTRAS["exact"], *EXTRAS["coco"], *EXTRAS["onnx"], *EXTRAS["serve"],
                        *EXTRAS["tensorboard"], *EXTRAS["video"]})

setup(
    name="darknet_torch",
    version="0.1.0",
    description="Darknet (AlexeyAB) in PyTorch: load .cfg/.weights, detect, evaluate mAP, train, export",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.9",
    packages=find_packages(include=["darknet_torch", "darknet_torch.*"]),
    # torch: any 2.x; on CPU-only machines install the CPU build first (see README), e.g. torch==2.13.0.
    install_requires=["torch>=2.1", "numpy>=1.23", "pillow>=9.1", "matplotlib>=3.5", "terminaltables>=3.1",
                      "tqdm>=4.60"],
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["darknet_torch=darknet_torch.cli.main:main"]},
)
