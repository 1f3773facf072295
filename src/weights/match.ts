/**
 * Fit a loaded state_dict to a model: every key present, no extras, every shape equal; values converted to the
 * model's dtypes. Errors name the key and both shapes, which is what tells a user they paired the wrong arch.
 */
import { VggError } from "../errors.js";
import type { ParamSpec } from "../ops/types.js";
import { numel, type StateDict, shapeStr, type Tensor } from "../tensor.js";
import { stateSpec, type VggModel } from "../zoo/model.js";

function toFloat32(t: Tensor): Float32Array {
  const d = t.data;
  if (t.dtype === "float32") return d as Float32Array;
  if (t.dtype === "float16") {
    const out = new Float32Array(d.length);
    const u = d as Uint16Array;
    for (let k = 0; k < u.length; k++) out[k] = halfToFloat(u[k]);
    return out;
  }
  if (t.dtype === "float64") return Float32Array.from(d as Float64Array);
  throw new Error(`dtype ${t.dtype} where a float tensor belongs`);
}

export function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? Number.NaN : s * Number.POSITIVE_INFINITY;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/**
 * A state_dict saved from a model wrapped in `nn.DataParallel` / `DistributedDataParallel` has every key under
 * `module.`; torchvision's names are what follows. Only stripped when every key has the prefix, so a file that
 * merely contains a `module.` entry is left as it is (and the mismatch is reported by name).
 */
export function stripModulePrefix(sd: StateDict): StateDict {
  const keys = [...sd.keys()];
  if (keys.length === 0 || !keys.every((k) => k.startsWith("module.") && k.length > 7)) return sd;
  const out: StateDict = new Map();
  for (const [k, t] of sd) out.set(k.slice(7), t);
  return out;
}

function describe(m: VggModel): string {
  return `${m.arch} (${m.options.head} head, ${m.options.numClasses} classes, width /${m.options.widthDivisor})`;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, k) => d === b[k]);
}

/** One file tensor converted to the dtype and shape the model's parameter has (shapes already agree). */
function fitTensor(key: string, t: Tensor, param: ParamSpec, file?: string): Tensor {
  if (param.dtype === "int64") {
    const v = t.dtype === "int64" ? (t.data as BigInt64Array) : BigInt64Array.from([BigInt(Math.trunc(Number(t.data[0] ?? 0)))]);
    return { dtype: "int64", shape: param.shape, data: v };
  }
  let data: Float32Array;
  try {
    data = toFloat32(t);
  } catch (err) {
    throw new VggError(`key '${key}': ${(err as Error).message}`, file);
  }
  if (data.length !== numel(param.shape))
    throw new VggError(`key '${key}' holds ${data.length} values for shape ${shapeStr(param.shape)}`, file);
  return { dtype: "float32", shape: param.shape, data };
}

function refuseExtras(m: VggModel, sd: StateDict, file?: string): void {
  const want = new Set(stateSpec(m).map((e) => e.key));
  const extra = [...sd.keys()].filter((k) => !want.has(k));
  if (extra.length === 0) return;
  const shown = extra
    .slice(0, 3)
    .map((k) => `'${k}' ${shapeStr(sd.get(k)?.shape ?? [])}`)
    .join(", ");
  throw new VggError(
    `unexpected key${extra.length > 1 ? "s" : ""} ${shown}${extra.length > 3 ? ` and ${extra.length - 3} more` : ""} for ${describe(m)}`,
    file,
  );
}

/** Older torchvision files predate BN's counter; it carries no numbers the forward pass needs. */
function missing(m: VggModel, key: string, param: ParamSpec, file?: string): Tensor {
  if (param.suffix === "num_batches_tracked") return { dtype: "int64", shape: [], data: new BigInt64Array(1) };
  throw new VggError(`missing key '${key}' (shape ${shapeStr(param.shape)}) for ${describe(m)}`, file);
}

/** Strict: every key present, no extras, every shape equal. */
export function matchStateDict(m: VggModel, sdIn: StateDict, file?: string): StateDict {
  const sd = stripModulePrefix(sdIn);
  const out: StateDict = new Map();
  for (const { key, param } of stateSpec(m)) {
    const t = sd.get(key);
    if (!t) {
      out.set(key, missing(m, key, param, file));
      continue;
    }
    if (!sameShape(t.shape, param.shape))
      throw new VggError(`key '${key}' has shape ${shapeStr(t.shape)}, ${describe(m)} needs ${shapeStr(param.shape)}`, file);
    out.set(key, fitTensor(key, t, param, file));
  }
  refuseExtras(m, sd, file);
  return out;
}

/** The last FC layer's module name (the classifier a fine-tuning run replaces). */
export function lastFc(m: VggModel): string {
  const fc = m.layers.filter((l) => l.kind === "linear");
  if (fc.length === 0) throw new Error(`${m.arch} has no FC layer`);
  return fc[fc.length - 1].name;
}

export interface FineTuneFit {
  weights: StateDict;
  /** Keys taken from the file. */
  loaded: string[];
  /** Keys left at their fresh initialisation, each with why. */
  reinit: { key: string; why: string }[];
}

function allNaN(t: Tensor): boolean {
  return (t.dtype === "float32" || t.dtype === "float64") && t.data.length > 0 && (t.data as Float32Array).every(Number.isNaN);
}

/**
 * timm's `pretrained=True, num_classes=N`: every tensor whose name and shape match is taken from the file; the last
 * FC keeps its fresh initialisation when its shape differs (another number of classes), as do tensors that are all
 * NaN in the file (torchvision's IMAGENET1K_FEATURES ships its classifier so). Any other mismatch is an error.
 */
export function fitForFineTune(m: VggModel, sdIn: StateDict, fresh: StateDict, file?: string): FineTuneFit {
  const sd = stripModulePrefix(sdIn);
  const head = lastFc(m);
  const weights: StateDict = new Map();
  const loaded: string[] = [];
  const reinit: { key: string; why: string }[] = [];
  const keepFresh = (key: string, why: string) => {
    const t = fresh.get(key);
    if (!t) throw new Error(`fine-tune: no fresh value for ${key}`);
    weights.set(key, t);
    reinit.push({ key, why });
  };
  for (const { key, layer, param } of stateSpec(m)) {
    const t = sd.get(key);
    if (!t) {
      weights.set(key, missing(m, key, param, file));
      continue;
    }
    if (!sameShape(t.shape, param.shape)) {
      if (layer.name !== head)
        throw new VggError(`key '${key}' has shape ${shapeStr(t.shape)}, ${describe(m)} needs ${shapeStr(param.shape)}`, file);
      keepFresh(key, `${shapeStr(t.shape)} in the file, ${shapeStr(param.shape)} here`);
      continue;
    }
    if (allNaN(t)) {
      keepFresh(key, "all NaN in the file");
      continue;
    }
    weights.set(key, fitTensor(key, t, param, file));
    loaded.push(key);
  }
  refuseExtras(m, sd, file);
  return { weights, loaded, reinit };
}
