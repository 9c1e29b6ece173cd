#!/usr/bin/env bash
# One command for a CUDA machine (under 8 minutes on an H100 by design; see README):
#   PYTHONPATH=. bash benchmarks/device_check.sh              # from the repository root, nothing installed
#   PYTHONPATH=. bash benchmarks/device_check.sh --cpu-smoke  # the same steps at tiny sizes on CPU (CI runs this;
#                                                              bash benchmarks/check_device_torch.sh on the GPU's torch)
# 1. imports: torch, numpy, pytest and the modules `hdl train` / `hdl embed` use (no faiss, wandb, snakemake, tqdm; torchvision for now: hdl.data.randaugment);
# 2. the CUDA tests (tests whose id names cuda); on CPU too, where those that need a GPU skip and the fake-CUDA ones run;
# 3. for every method, in fp32 and in bf16: `hdl split`, a 200-step `hdl train`, the same run interrupted after its
#    step-100 checkpoint and resumed (compared with the uninterrupted run), `hdl embed` (benchmarks/device_check.py);
# 4. bench_train for FixMatch, FreeMatch, MixMatch and ReMixMatch on WRN-28-2, 32x32x3, batch 64 at each
#    method's published uratio, fp32 and bf16, eager beside compiled (reduce-overhead), every timed step under
#    torch.cuda.set_sync_debug_mode("error").
# Prints the table last and writes it to $OUT/device_check.txt when OUT is set. PYTHON picks the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
mode=cuda
case "${1:-}" in
  --cpu-smoke) mode=cpu-smoke ;;
  "") ;;
  *) echo "usage: bash benchmarks/device_check.sh [--cpu-smoke]" >&2; exit 2 ;;
esac

if [ "$mode" = cuda ]; then
  device=cuda; train_steps=200; train_batch=64; train_images=4096; train_set=()
  bench=(--device cuda --archs wrn-28-2 --shapes 32x32x3 --batch-size 64 --compile reduce-overhead --steps 30 --warmup 5)
  precisions=(fp32 bf16)
else
  device=cpu; train_steps=4; train_batch=4; train_images=256; train_set=(--set uratio=1)
  bench=(--device cpu --archs wrn-10-1 --shapes 28x28x1 --batch-size 2 --set uratio=1 --compile default --steps 1 --warmup 0 --threads 2)
  precisions=(fp32)  # bf16 trains in step 3; on CPU one compile of bench_train is enough
fi
bench_methods=(fixmatch freematch mixmatch remixmatch)
# CPU: compiling all four takes minutes on 2 cores; tests/test_compile.py compiles every method already.
[ "$mode" = cuda ] || bench_methods=(fixmatch)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
table="$work/device_check.txt"
started=$(date +%s)
section() { echo; echo "== $1 ($(( $(date +%s) - started )) s so far)"; }

section "imports"
"$PYTHON" - <<'PY'
import importlib, sys
missing = []
for name in ("torch", "numpy", "pytest", "hdl.cli", "hdl.training.train_cli", "hdl.training.embed_cli", "hdl.data.split_cli",
             "hdl.training.loop", "hdl.training.synthetic", "hdl.data.augment"):
    try:
        importlib.import_module(name)
    except ImportError as error:
        missing.append(f"{name} ({type(error).__name__}: {error})")
if missing:
    sys.exit("device_check: cannot import " + "; ".join(missing) + ". Run from the repository root with PYTHONPATH=. "
             "and a Python that has torch, numpy and pytest.")
import torch
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, device: "
      + (torch.cuda.get_device_name() if torch.cuda.is_available() else "none"))
PY
if [ "$device" = cuda ]; then
  "$PYTHON" -c 'import sys, torch; torch.cuda.is_available() or sys.exit("device_check: torch sees no CUDA device; use --cpu-smoke on CPU")'
fi
echo "device check ($mode) on $("$PYTHON" -c 'import torch; print(torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU")'), $(date -u +%Y-%m-%dT%H:%MZ)" > "$table"

section "CUDA tests"
# The same selection in both modes, so that the CPU smoke collects what a GPU runs; none selected is a failure too.
set +e
"$PYTHON" -m pytest -q -p no:cacheprovider -k cuda $(grep -l cuda tests/test_*.py) > "$work/cuda_tests.log" 2>&1
status=$?
set -e
tail -n 15 "$work/cuda_tests.log"
[ "$status" -eq 0 ] || { echo "device_check: CUDA tests failed"; exit 1; }
echo "CUDA tests (pytest -k cuda): $(tail -n 1 "$work/cuda_tests.log")" >> "$table"

section "hdl train / resume / embed, every method"
"$PYTHON" benchmarks/device_check.py --work "$work" --table "$table" --device "$device" --steps "$train_steps" \
  --batch-size "$train_batch" --images "$train_images" "${train_set[@]}"

for precision in "${precisions[@]}"; do
  section "bench_train $precision"
  "$PYTHON" benchmarks/bench_train.py "${bench[@]}" --precision "$precision" --sync-debug \
    --methods "${bench_methods[@]}" | tee -a "$table"
  echo >> "$table"
done

echo "total: $(( $(date +%s) - started )) s" >> "$table"
section "table"
cat "$table"
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT"
  cp "$table" "$OUT/device_check.txt"
fi
