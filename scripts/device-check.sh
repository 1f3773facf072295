#!/usr/bin/env bash
# The WebGPU check, in one call on a machine with an NVIDIA GPU (issue 19): ORT's bundled WebGPU provider (Dawn over
# Vulkan) against the CPU on the same machine.
#   1. the Vulkan loader: unpacked from .gl/*.deb when the machine has no libvulkan.so.1, and VK_DRIVER_FILES set to
#      the NVIDIA ICD when the loader's own folders name none (the device tool's README recipe);
#   2. Node, dist/ and the runtime packages from .device/ when the machine lacks them (scripts/device-pack.sh);
#   3. which graph nodes WebGPU takes and which fall back to the CPU (dist/bench/webgpu-placement.js);
#   4. the correctness tests with the GPU required (test/device.test.ts: 12 archs' logits, one training step);
#   5. `vgg bench infer` (vgg16 224, batch 1/8/32) and `vgg bench train` (vgg11_bn 32x32 batch 128, vgg16_bn 224x224
#      batch 32; compact head, 10 classes, as the project's training benchmark) on webgpu and on cpu, row by row.
# Results (7 files) in $OUT, else bench/results/webgpu-<date>/: env.txt, placement.json, tests.log, correctness.json,
# bench.jsonl, bench.log, summary.json. Each step has a timeout, and rows not started by DEVICE_CHECK_DEADLINE seconds
# (default 330) are skipped, so that what finished comes back within the call.
#   here:   npx tsc -p tsconfig.json && bash scripts/device-pack.sh
#   device: carry [".device", ".gl"], command `bash scripts/device-check.sh`, timeout_s 450
set -uo pipefail
cd "$(dirname "$0")/.."
T0=$SECONDS
DEADLINE=${DEVICE_CHECK_DEADLINE:-330}
R=${OUT:-bench/results/webgpu-$(date +%F)}
mkdir -p "$R"
ENV="$R/env.txt"
say() { echo "[$((SECONDS - T0))s] $*" | tee -a "$ENV"; }

# 1. Vulkan. Unpacked into / only on an NVIDIA machine (the device's, which starts bare and is given back), never on
# a developer's or CI's.
if ! ldconfig -p | grep -q 'libvulkan\.so\.1'; then
  if ! command -v nvidia-smi >/dev/null; then
    say "no libvulkan.so.1, and no NVIDIA machine to unpack .gl/ on: WebGPU will find no adapter"
  elif ls .gl/*.deb >/dev/null 2>&1; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
    say "Vulkan loader unpacked from .gl/"
  else
    say "no libvulkan.so.1 and no .gl/*.deb to unpack"
  fi
fi
if [ -z "${VK_DRIVER_FILES:-}" ] && ! ls /usr/share/vulkan/icd.d/*nvidia* /etc/vulkan/icd.d/*nvidia* >/dev/null 2>&1; then
  for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/local/nvidia/icd.d/nvidia_icd.json; do
    if [ -f "$icd" ]; then
      export VK_DRIVER_FILES=$icd
      break
    fi
  done
fi

# 2. Node and what it runs.
unpack() { python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2], filter="data")' "$1" "$2" || tar -xJf "$1" -C "$2"; }
if [ -f .device/dist.tar.xz ]; then unpack .device/dist.tar.xz .; fi
if [ -f .device/node_modules.tar.xz ] && [ ! -d node_modules/onnxruntime-node ]; then unpack .device/node_modules.tar.xz .; fi
if ! command -v node >/dev/null && [ -f .device/node.tar.xz ]; then
  mkdir -p /tmp/vgg-node && unpack .device/node.tar.xz /tmp/vgg-node && chmod +x /tmp/vgg-node/node
  export PATH=/tmp/vgg-node:$PATH
fi
{
  echo "== machine"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1
  echo "cpus $(nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
  echo "node $(node --version 2>&1), VK_DRIVER_FILES=${VK_DRIVER_FILES:-}"
  ldconfig -p | grep -E 'libvulkan|libGLX_nvidia' 2>&1
  echo "== the adapter probe (its stderr: Dawn's own words)"
  node dist/src/runtime/webgpu-probe.js 2>&1
} >>"$ENV" 2>&1
say "set up"

# 3. Placement.
timeout 150 node dist/bench/webgpu-placement.js >"$R/placement.json" 2>>"$ENV"
say "placement: exit $?"

# 4. Correctness, the GPU required.
VGG_TEST_DEVICE=webgpu VGG_DEVICE_REPORT="$R/correctness.json" timeout 200 node --test dist/test/device.test.js >"$R/tests.log" 2>&1
say "correctness tests: exit $? ($(grep -cE '^ok ' "$R/tests.log") ok, $(grep -cE '^not ok ' "$R/tests.log") not ok)"

# 5. Throughput, each row on webgpu then cpu.
row() {
  local label=$1 dev=$2
  shift 2
  if ((SECONDS - T0 > DEADLINE)); then
    say "skipped (past ${DEADLINE}s): bench $* --device $dev"
    echo "{\"row\":\"$label\",\"device\":\"$dev\",\"skipped\":\"deadline\"}" >>"$R/bench.jsonl"
    return
  fi
  echo "== bench $* --device $dev" >>"$R/bench.log"
  local out rc
  out=$(timeout 150 node bin/vgg.js bench "$@" --device "$dev" --json 2>>"$R/bench.log")
  rc=$?
  # A result printed before a hang at exit still counts; the exit code goes with it.
  if [[ "$out" == \{* ]]; then
    echo "{\"row\":\"$label\",${out#\{}" | sed "s/}\$/,\"exit\":$rc}/" >>"$R/bench.jsonl"
  else
    echo "{\"row\":\"$label\",\"device\":\"$dev\",\"exit\":$rc}" >>"$R/bench.jsonl"
  fi
  say "bench $* --device $dev: exit $rc"
}
for b in 1 8 32; do
  row "infer vgg16 224 b$b" webgpu infer --arch vgg16 --batch "$b" --iterations 10 --warmup 3
  row "infer vgg16 224 b$b" cpu infer --arch vgg16 --batch "$b" --iterations 3 --warmup 1
done
TRAIN32=(train --arch vgg11_bn --head compact --num-classes 10 --input-size 32 --batch 128)
row "train vgg11_bn 32 b128" webgpu "${TRAIN32[@]}" --steps 8 --warmup 2
row "train vgg11_bn 32 b128" cpu "${TRAIN32[@]}" --steps 4 --warmup 1
TRAIN224=(train --arch vgg16_bn --head compact --num-classes 10 --input-size 224 --batch 32)
row "train vgg16_bn 224 b32" webgpu "${TRAIN224[@]}" --steps 3 --warmup 1
row "train vgg16_bn 224 b32" cpu "${TRAIN224[@]}" --steps 2 --warmup 1

# The table: img/s per row, GPU against CPU.
node -e '
const fs = require("node:fs");
const dir = process.argv[1];
const rows = fs.readFileSync(`${dir}/bench.jsonl`, "utf8").trim().split("\n").map((l) => JSON.parse(l));
const table = {};
for (const r of rows) (table[r.row] ??= {})[r.device] = r.imagesPerSecond ?? r.skipped ?? `exit ${r.exit}`;
for (const t of Object.values(table)) if (typeof t.webgpu === "number" && typeof t.cpu === "number") t.speedup = t.webgpu / t.cpu;
const read = (f) => (fs.existsSync(`${dir}/${f}`) ? JSON.parse(fs.readFileSync(`${dir}/${f}`, "utf8")) : null);
fs.writeFileSync(`${dir}/summary.json`, `${JSON.stringify({ imagesPerSecond: table, correctness: read("correctness.json") }, null, 1)}\n`);
console.log(JSON.stringify(table, null, 1));
' "$R" | tee -a "$ENV"
say "done"
