#!/usr/bin/env bash
# Everything worth knowing about one GPU in under four minutes, from a built binary:
#   tools/gpu_report.sh [path/to/res2net] [out-dir]
# Prints the adapter and driver (and `vulkaninfo --summary` / `nvidia-smi` where present), verifies
# res2net50_26w_4s against the CPU reference, then benchmarks it at batch 1, 8 and 32 in f32 and f16
# (tuned; the tuner's choice per kernel is in each JSON's "kernels"). Every step has its own time
# limit, so a hung driver costs that step, not the report. Results: OUT/*.json and OUT/report.txt.
set -uo pipefail

bin="${1:-target/release/res2net}"
out="${2:-gpu-report}"
arch="${ARCH:-res2net50_26w_4s}"
size="${SIZE:-224}"   # ARCH and SIZE: a smaller run, e.g. to try the script on a CPU adapter
budget=235           # seconds: steps are cut (and then skipped) to end within four minutes
mkdir -p "$out"
log="$out/report.txt"
: >"$log"

say() { echo "$*" | tee -a "$log"; }
step() { # step SECONDS NAME COMMAND...: runs COMMAND with a limit; stdout to OUT/NAME.txt, stderr to .err
  local limit="$1" name="$2"
  shift 2
  local left=$((budget - SECONDS))
  if [ "$left" -le 5 ]; then
    say "== $name: skipped, the four minutes are spent"
    return 124
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  local t0=$SECONDS
  timeout "$limit" "$@" >"$out/$name.txt" 2>"$out/$name.err"
  local rc=$?
  say "== $name: exit $rc in $((SECONDS - t0)) s"
  [ $rc -ne 0 ] && tail -n 3 "$out/$name.err" | tee -a "$log"
  return $rc
}

say "res2net GPU report, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(uname -srm)"
if [ ! -x "$bin" ]; then
  say "no binary at $bin: build it with 'cargo build --release' first"
  exit 1
fi
say "binary: $bin ($("$bin" --version 2>&1))"
if command -v nvidia-smi >/dev/null; then
  step 20 nvidia-smi nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  tee -a "$log" <"$out/nvidia-smi.txt"
fi
if command -v vulkaninfo >/dev/null; then
  step 30 vulkaninfo vulkaninfo --summary
  grep -E "deviceName|driverName|driverInfo|apiVersion|deviceType" "$out/vulkaninfo.txt" | tee -a "$log"
else
  say "vulkaninfo: not installed"
fi

# Correctness first: every op of the GPU session against the CPU reference (random weights).
step 60 verify "$bin" verify --arch "$arch" --size "$size" --tune off
tail -n 1 "$out/verify.txt" | tee -a "$log"

# Each bench tunes (and caches) the conv families and tiles for its batch size and precision: a
# tuning start, whose time its JSON reports apart ("tuning"); a rerun reads the cache.
for precision in f32 f16; do
  for batch in 1 8 32; do
    iters=10
    [ "$batch" -ge 32 ] && iters=5
    name="bench-$precision-b$batch"
    if step 60 "$name" "$bin" bench --arch "$arch" --size "$size" --batch "$batch" --iters "$iters" \
      --precision "$precision" --json; then
      cp "$out/$name.txt" "$out/$name.json"
      python3 - "$out/$name.json" <<'PY' | tee -a "$log"
import json, sys
r = json.load(open(sys.argv[1]))
t = r["tuning"]
print(f'   {r["adapter"]}: batch {r["batch"]} {r["precision"]}: {r["latency_ms_median"]:.2f} ms median, '
      f'{r["images_per_s"]:.1f} images/s, {r["gflops_effective"]:.0f} GFLOP/s = '
      f'{100 * r["peak_fraction"]:.1f}% of the FMA peak ({r["adapter_peak_gflops"]:.0f} GFLOP/s); '
      f'session {r["session_ms"]:.0f} ms, tuning {t["ms"]:.0f} ms ({t["measured"]} timed, {t["cached"]} cached)')
print("   kernels: " + ", ".join(f'{k["ops"]} x {k["kernel"]}' for k in r["kernels"]))
PY
    fi
  done
done
say "done in $SECONDS s; files in $out/"
