/**
 * The timing method every ORT contender in bench/ shares, so "ours" and "ORT on torch's export" differ only in
 * the graph they hand ONNX Runtime. It mirrors what `vgg bench infer` reports (one JSON line, median batch time).
 */

import { Xoshiro128 } from "../src/random.js";
import type { Session } from "../src/runtime/ort.js";
import type { Tensor } from "../src/tensor.js";

export interface InferTiming {
  imagesPerSecond: number;
  gflops: number;
  msPerBatch: number;
  peakRssMB: number;
  loadMs: number;
  timesMs: number[];
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** ru_maxrss of this process, in MiB (Node reports KiB, as getrusage does). */
export function peakRssMB(): number {
  return process.resourceUsage().maxRSS / 1024;
}

/** Seeded N(0, 1) input; its values do not change the work done, but a fixed seed keeps the runs identical. */
export function randomInput(batch: number, size: number, seed = 0): Tensor {
  const rng = new Xoshiro128(seed);
  const data = new Float32Array(batch * 3 * size * size);
  for (let k = 0; k < data.length; k++) data[k] = rng.normal();
  return { dtype: "float32", shape: [batch, 3, size, size], data };
}

export async function timeSession(
  session: Session,
  input: Tensor,
  o: { warmup: number; iterations: number; macsPerImage: number; loadMs: number },
): Promise<InferTiming> {
  const feeds = { [session.inputNames[0]]: input };
  const batch = input.shape[0];
  // The first runs pay for ORT's lazy allocations and the weight prepacking; they are not the steady state.
  for (let k = 0; k < o.warmup; k++) await session.run(feeds);
  const timesMs: number[] = [];
  for (let k = 0; k < o.iterations; k++) {
    const t = performance.now();
    await session.run(feeds);
    timesMs.push(performance.now() - t);
  }
  const ms = median(timesMs);
  const ips = (batch * 1000) / ms;
  return {
    imagesPerSecond: ips,
    gflops: (2 * o.macsPerImage * ips) / 1e9,
    msPerBatch: ms,
    peakRssMB: peakRssMB(),
    loadMs: o.loadMs,
    timesMs,
  };
}

/** A tiny `--flag value` parser: bench scripts take few flags and should not depend on the CLI's parser. */
export function parseFlags(argv: string[]): Map<string, string> {
  const m = new Map<string, string>();
  for (let k = 0; k < argv.length; k++) {
    const a = argv[k];
    if (!a.startsWith("--")) throw new Error(`unexpected argument '${a}'`);
    const eq = a.indexOf("=");
    if (eq > 0) m.set(a.slice(2, eq), a.slice(eq + 1));
    else if (k + 1 < argv.length && !argv[k + 1].startsWith("--")) m.set(a.slice(2), argv[++k]);
    else m.set(a.slice(2), "true");
  }
  return m;
}

export function intFlag(f: Map<string, string>, name: string, dflt: number): number {
  const v = f.get(name);
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a non-negative integer, got '${v}'`);
  return n;
}
