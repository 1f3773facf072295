/**
 * Seeded initialisation. Schemes: torchvision's (Kaiming normal fan_out for convs, N(0, 0.01) for FCs), the
 * paper's N(0, 0.01) everywhere (its "10^-2" read as the standard deviation, as the authors' Caffe files use),
 * and Glorot uniform (which the authors found to work without pre-training net A). Biases 0, BN gamma 1 beta 0.
 */
import { VggError } from "../errors.js";
import { Xoshiro128 } from "../random.js";
import { numel, type StateDict, type Tensor } from "../tensor.js";
import { stateSpec, type VggModel } from "../zoo/model.js";

export type InitScheme = "torchvision" | "paper" | "glorot";
export const INIT_SCHEMES: InitScheme[] = ["torchvision", "paper", "glorot"];

function fill(shape: number[], gen: () => number): Float32Array {
  const a = new Float32Array(numel(shape));
  for (let k = 0; k < a.length; k++) a[k] = gen();
  return a;
}

export function initWeights(m: VggModel, scheme: InitScheme = "torchvision", seed = 0): StateDict {
  if (!INIT_SCHEMES.includes(scheme)) throw new VggError(`unknown init '${scheme}' (known: ${INIT_SCHEMES.join(", ")})`);
  const rng = new Xoshiro128(seed);
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
