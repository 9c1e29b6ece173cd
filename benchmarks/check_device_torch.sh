#!/usr/bin/env bash
# The device check on the GPU machines' stack, here on CPU: Python 3.12 with torch 2.11.0 and torchvision 0.26.0
# (this project pins 2.14.1). Run it before every change to the device check (README, "the device check"):
#   bash benchmarks/check_device_torch.sh [ENV_DIR]   # ENV_DIR: default ~/.cache/hdl-device-torch, outside git
# Builds a venv there once (torch, torchvision, numpy, scipy, pytest, pyyaml and nothing else the project needs),
# then runs `device_check.sh --cpu-smoke` in it, whose step 2 runs the CUDA tests (those that need a GPU skip).
# PYTHON312 picks the interpreter that builds the venv. Not part of `make test` nor CI: the first run downloads
# torch (a CUDA build of about 3 GB from PyPI when download.pytorch.org's CPU wheels are out of reach).
set -euo pipefail
env_dir=$(realpath -m "${1:-$HOME/.cache/hdl-device-torch}")
cd "$(dirname "$0")/.."
if [[ "$env_dir/" == "$PWD/"* ]] && ! git check-ignore -q "$env_dir"; then
  echo "check_device_torch: $env_dir is inside the repository and git does not ignore it; pick a folder outside" >&2
  exit 2
fi
packages=(torch==2.11.0 torchvision==0.26.0 numpy scipy pytest pyyaml)
started=$(date +%s)

python312() {
  if [ -n "${PYTHON312:-}" ]; then echo "$PYTHON312"
  elif command -v python3.12 >/dev/null && python3.12 --version >/dev/null 2>&1; then command -v python3.12
  elif command -v pyenv >/dev/null && prefix=$(pyenv prefix 3.12 2>/dev/null); then echo "$prefix/bin/python3.12"
  else echo "check_device_torch: no Python 3.12 (set PYTHON312)" >&2; exit 1
  fi
}

python=$env_dir/bin/python
if [ ! -x "$python" ]; then
  "$(python312)" -m venv "$env_dir"
fi
# Already installed, pip install is a no-op that asks no index.
index=()
if curl -sfI --max-time 10 https://download.pytorch.org/whl/cpu/ >/dev/null; then
  index=(--index-url https://download.pytorch.org/whl/cpu --extra-index-url https://pypi.org/simple)
fi
"$python" -m pip install --quiet --disable-pip-version-check "${index[@]}" "${packages[@]}"
installed=$(date +%s)
versions=$("$python" -c 'import sys, torch, torchvision; print(f"Python {sys.version.split()[0]}, torch {torch.__version__}, torchvision {torchvision.__version__}")')
echo "check_device_torch: $env_dir ready in $(( installed - started )) s: $versions"

PYTHONPATH=. PYTHON=$python bash benchmarks/device_check.sh --cpu-smoke
echo "check_device_torch: device check passed on torch 2.11 in $(( $(date +%s) - installed )) s (venv $(( installed - started )) s)"
