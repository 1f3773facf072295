#!/usr/bin/env bash
# Packs what scripts/device-check.sh needs on a GPU machine that has no network and no Node: into .device/ (ignored)
# the built dist/ (src, test, bench), the runtime packages (commander, onnxruntime-common, onnxruntime-node with its
# linux x64 binaries only: the whole package is 288 MB, its linux x64 library 44 MB), and this machine's node binary;
# into .gl/ the Vulkan loader and GL dispatch libraries as .debs (the device tool's README recipe). Run it after
# `npx tsc -p tsconfig.json`; then carry [".device", ".gl"] and run `bash scripts/device-check.sh`.
# Everything is xz-compressed (node 99 -> 24 MB, libonnxruntime 44 -> 13 MB) to fit the tool's 64 MiB transfer.
set -euo pipefail
cd "$(dirname "$0")/.."
for p in /.device/ /.gl/; do grep -qxF "$p" .git/info/exclude 2>/dev/null || echo "$p" >>.git/info/exclude; done
test -f dist/src/cli/main.js || { echo "device-pack: build first (npx tsc -p tsconfig.json)" >&2; exit 1; }
rm -rf .device && mkdir -p .device
XZ="xz -T0 -6"
tar -cf - dist/src dist/test dist/bench | $XZ >.device/dist.tar.xz
ORT=node_modules/onnxruntime-node
tar -cf - node_modules/commander node_modules/onnxruntime-common "$ORT/package.json" "$ORT/dist" "$ORT/bin/napi-v6/linux/x64" |
  $XZ >.device/node_modules.tar.xz
# The node binary, for machines without one (the device image has none): a self-contained build (libc and libstdc++).
NODE_BIN=$(readlink -f "$(command -v node)")
tar -cf - -C "$(dirname "$NODE_BIN")" "$(basename "$NODE_BIN")" | $XZ >.device/node.tar.xz
if ! ls .gl/libvulkan1_*.deb >/dev/null 2>&1; then
  mkdir -p .gl /tmp/amd64/partial
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  # shellcheck disable=SC2086
  apt-get $o update -qq
  # shellcheck disable=SC2086
  (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
fi
du -sh .device/* .gl
