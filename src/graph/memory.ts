/**
 * Peak memory estimates, so a run that cannot fit is refused before it starts rather than killed by the OS half
 * way. The model is a few measured terms (bench/results/memory-*.md has the fit and the check against real peak
 * RSS); it errs high on purpose, and `--no-memory-check` (or VGG_NO_MEMORY_CHECK=1) skips the check.
 * - Runtime: Node, ONNX Runtime and their libraries, about 150 MiB.
 * - Inference: ORT's weights plus its prepacked copies (1.6x the weights); per image, two live activations of the
 *   largest layer. With Winograd (the CPU's fp32 default, graph/winograd-infer.ts) also the transformed kernels
 *   (4x the 3x3 ones) and, per image, a layer's tiles: its transformed input and the GEMM's output, 2.25x the
 *   larger of its input and output each, beside the input.
 * - Training: weights and momentum as graph inputs, ORT's new values written into them and the binding's copies
 *   (train/step-runner.ts), gradients and the Winograd-transformed kernels: 7.5x the weights (the frozen fine-tuning
 *   step, whose arena holds fc6's update temporaries, measured 6.3x); activations kept for the backward pass and
 *   their gradients: 3x the sum of all layer outputs, 1x where the step runs without ORT's arena (trained convs on
 *   large maps: trainSessionOptions; vgg16_bn 224 b8 peaked at 2.9 GB); the largest im2col buffer (C*k*k x H*W*N).
 * - Fine-tuning with a frozen prefix: the frozen layers count as inference does (their weights 2.6x: ORT's copy and
 *   its prepacked one, plus the trainer's; two live activations of their largest layer), the rest as training.
 */
import { readFileSync } from "node:fs";
import { freemem } from "node:os";
import { VggError } from "../errors.js";
import { numel } from "../tensor.js";
import { stateSpec, type VggModel } from "../zoo/model.js";
import { trainSessionOptions } from "./train-step.js";
import { winogradWins } from "./winograd-infer.js";

const MiB = 2 ** 20;
export const RUNTIME_BYTES = 150 * MiB;

export interface MemoryEstimate {
  total: number;
  parts: { runtime: number; weights: number; activations: number; workspace: number };
}

function sizes(m: VggModel, layers = m.layers) {
  const weights = stateSpec(m).reduce((n, e) => n + (layers.includes(e.layer) ? numel(e.param.shape) : 0), 0) * 4;
  const perImage = layers.reduce((n, l) => n + numel(l.outShape), 0) * 4;
  const largest = Math.max(0, ...layers.map((l) => numel(l.outShape))) * 4;
  const im2col = Math.max(
    0,
    ...layers.map((l) => (l.kind === "conv" ? l.attrs.inC * l.attrs.kernel ** 2 * l.inShape[1] * l.inShape[2] * 4 : 0)),
  );
  return { weights, perImage, largest, im2col };
}

export function estimateInference(m: VggModel, batch: number, weightBytesPerParam = 4): MemoryEstimate {
  const s = sizes(m);
  const w = weightBytesPerParam === 4 ? winogradBytes(m) : { kernels: 0, tiles: 0 };
  const parts = {
    runtime: RUNTIME_BYTES,
    weights: 1.6 * s.weights * (weightBytesPerParam / 4) + w.kernels,
    activations: batch * Math.max(2 * s.largest, s.largest + w.tiles),
    workspace: 0,
  };
  return { total: parts.runtime + parts.weights + parts.activations + parts.workspace, parts };
}

/** The Winograd layers' transformed kernels, and the largest per-image tiles (transformed input and GEMM output). */
function winogradBytes(m: VggModel): { kernels: number; tiles: number } {
  const layers = m.layers.filter(winogradWins);
  let kernels = 0;
  let tiles = 0;
  for (const l of layers) {
    if (l.kind !== "conv") continue;
    kernels += 4 * l.attrs.inC * l.attrs.outC * 9 * 4;
    tiles = Math.max(tiles, 2 * 2.25 * Math.max(l.attrs.inC, l.attrs.outC) * l.inShape[1] * l.inShape[2] * 4);
  }
  return { kernels, tiles };
}

/** `freeze`: the number of leading layers frozen (TrainStepOptions.freeze). */
export function estimateTraining(m: VggModel, batch: number, freeze = 0): MemoryEstimate {
  const s = sizes(m, m.layers.slice(freeze));
  const f = sizes(m, m.layers.slice(0, freeze));
  const parts = {
    runtime: RUNTIME_BYTES,
    weights: 7.5 * s.weights + 2.6 * f.weights,
    activations: (trainSessionOptions(m, freeze).memArena === false ? 1 : 3) * batch * s.perImage + 2 * batch * f.largest,
    workspace: batch * s.im2col,
  };
  return { total: parts.runtime + parts.weights + parts.activations + parts.workspace, parts };
}

/** VGG_MEMORY_LIMIT=4G (or 512M, or bytes): a cap of the user's own below what the machine has. */
function userLimit(): number {
  const v = process.env.VGG_MEMORY_LIMIT;
  if (!v) return Number.POSITIVE_INFINITY;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*$/i.exec(v);
  if (!m) throw new VggError(`VGG_MEMORY_LIMIT: cannot read '${v}' (want e.g. 4G, 512M or a byte count)`);
  return Number(m[1]) * 1024 ** "BKMGT".indexOf((m[2] || "B").toUpperCase());
}

/**
 * Memory this process may still use: MemAvailable, the cgroup's limit minus its usage, or VGG_MEMORY_LIMIT, whichever
 * is lowest.
 */
export function availableMemory(): number {
  let avail = Math.min(freemem(), userLimit());
  try {
    const m = /MemAvailable:\s+(\d+) kB/.exec(readFileSync("/proc/meminfo", "utf8"));
    if (m) avail = Math.min(Number(m[1]) * 1024, userLimit());
  } catch {}
  try {
    const max = readFileSync("/sys/fs/cgroup/memory.max", "utf8").trim();
    if (max !== "max") {
      const used = Number(readFileSync("/sys/fs/cgroup/memory.current", "utf8").trim());
      avail = Math.min(avail, Number(max) - used);
    }
  } catch {}
  return avail;
}

export const fmtMiB = (b: number): string => (b >= 10 * 2 ** 30 ? `${(b / 2 ** 30).toFixed(1)} GiB` : `${(b / MiB).toFixed(0)} MiB`);

/** Refuses a run whose estimate exceeds the memory available, naming the estimate and what to change. */
export function checkMemory(what: string, e: MemoryEstimate, hint: string): void {
  if (process.env.VGG_NO_MEMORY_CHECK === "1") return;
  const avail = availableMemory();
  if (e.total <= avail) return;
  const p = e.parts;
  throw new VggError(
    `${what} needs about ${fmtMiB(e.total)} (weights and optimizer ${fmtMiB(p.weights)}, activations ${fmtMiB(p.activations)}, workspace ${fmtMiB(p.workspace)}, runtime ${fmtMiB(p.runtime)}) but ${fmtMiB(avail)} is available: ${hint}, or pass --no-memory-check (VGG_NO_MEMORY_CHECK=1) if the estimate is wrong`,
  );
}

/** Evaluation batch: up to 256 images, fewer where the largest activations would pass about 512 MiB (224 inputs). */
export function evalBatchSize(m: VggModel): number {
  return Math.max(1, Math.min(256, Math.floor((512 * MiB) / (2 * sizes(m).largest))));
}
