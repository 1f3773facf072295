/**
 * Seeded initialisation. Schemes: torchvision's (Kaiming normal fan_out for convs, N(0, 0.01) for FCs), the
 * paper's N(0, 0.01) everywhere (its "10^-2" read as the standard deviation, as the authors' Caffe files use),
 * and Glorot uniform (which the authors found to work without pre-training net A). Biases 0, BN gamma 1 beta 0.
 */
import { VggError } from "../errors.js";
import { numel, type StateDict, type Tensor } from "../tensor.js";
import { stateSpec, type VggModel } from "../zoo/model.js";

export type InitScheme = "torchvision" | "paper" | "glorot";
export const INIT_SCHEMES: InitScheme[] = ["torchvision", "paper", "glorot"];

/** xoshiro128** seeded by splitmix32: fast, reproducible across platforms. */
export class Rng {
  private s = new Uint32Array(4);
  private spare: number | undefined;
  constructor(seed: number) {
    let x = seed >>> 0;
    for (let k = 0; k < 4; k++) {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      this.s[k] = (z ^ (z >>> 16)) >>> 0;
    }
  }
  /** Uniform in [0, 1). */
  next(): number {
    const s = this.s;
    const r = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return r / 4294967296;
  }
  /** Standard normal by Marsaglia's polar method (no trigonometry: twice Box-Muller's speed here). */
  normal(): number {
    if (this.spare !== undefined) {
      const v = this.spare;
      this.spare = undefined;
      return v;
    }
    let u: number;
    let v: number;
    let s: number;
    do {
      u = 2 * this.next() - 1;
      v = 2 * this.next() - 1;
      s = u * u + v * v;
    } while (s >= 1 || s === 0);
    const m = Math.sqrt((-2 * Math.log(s)) / s);
    this.spare = v * m;
    return u * m;
  }
  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

function fill(shape: number[], gen: () => number): Float32Array {
  const a = new Float32Array(numel(shape));
  for (let k = 0; k < a.length; k++) a[k] = gen();
  return a;
}

export function initWeights(m: VggModel, scheme: InitScheme = "torchvision", seed = 0): StateDict {
  if (!INIT_SCHEMES.includes(scheme)) throw new VggError(`unknown init '${scheme}' (known: ${INIT_SCHEMES.join(", ")})`);
  const rng = new Rng(seed);
  const sd: StateDict = new Map();
  for (const { key, layer, param } of stateSpec(m)) {
    const shape = param.shape;
    let t: Tensor;
    if (param.dtype === "int64") t = { dtype: "int64", shape, data: new BigInt64Array(numel(shape)) };
    else if (param.suffix === "weight" && (layer.kind === "conv" || layer.kind === "linear")) {
      const rf = shape.length === 4 ? shape[2] * shape[3] : 1;
      const fanIn = shape[1] * rf;
      const fanOut = shape[0] * rf;
      let gen: () => number;
      if (scheme === "glorot") {
        const a = Math.sqrt(6 / (fanIn + fanOut));
        gen = () => (2 * rng.next() - 1) * a;
      } else if (scheme === "torchvision" && layer.kind === "conv") {
        const std = Math.sqrt(2 / fanOut);
        gen = () => rng.normal() * std;
      } else gen = () => rng.normal() * 0.01;
      t = { dtype: "float32", shape, data: fill(shape, gen) };
    } else {
      const one = param.suffix === "running_var" || (layer.kind === "batchnorm" && param.suffix === "weight");
      t = { dtype: "float32", shape, data: new Float32Array(numel(shape)).fill(one ? 1 : 0) };
    }
    sd.set(key, t);
  }
  return sd;
}
