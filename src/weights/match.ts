/**
 * Fit a loaded state_dict to a model: every key present, no extras, every shape equal; values converted to the
 * model's dtypes. Errors name the key and both shapes, which is what tells a user they paired the wrong arch.
 */
import { VggError } from "../errors.js";
import type { ParamSpec } from "../ops/types.js";
import { numel, type StateDict, shapeStr, type Tensor } from "../tensor.js";
import { ARCHS } from "../zoo/configs.js";
import { buildModel, type ModelOptions, stateSpec, type VggModel } from "../zoo/model.js";

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

/**
 * The zoo models whose state dict `sd` is (every key and shape, BN counters aside) at the options `o` (width, head,
 * classes, input channels), in ARCHS order.
 */
export function zooFits(sd: StateDict, o: ModelOptions): VggModel[] {
  const n = [...sd.keys()].filter((k) => !k.endsWith("num_batches_tracked")).length;
  // Parameter shapes do not depend on the input size: 224 is one every zoo config takes.
  const zoo = { ...o, inputSize: 224, config: undefined, batchNorm: undefined, lrn: undefined };
  return ARCHS.map((a) => buildModel(a.name, zoo)).filter((m) => {
    const spec = stateSpec(m).filter((e) => e.param.suffix !== "num_batches_tracked");
    return n === spec.length && spec.every((e) => sameShape(sd.get(e.key)?.shape ?? [], e.param.shape));
  });
}

/** Rows of the file's last FC layer (classifier.6, or the compact head's classifier): its number of classes. */
function fileClasses(sd: StateDict): number | undefined {
  let last: { at: number; rows: number } | undefined;
  for (const [k, t] of sd) {
    const fc = /^classifier(?:\.(\d+))?\.weight$/.exec(k);
    if (!fc || t.shape.length !== 2) continue;
    const at = Number(fc[1] ?? 0);
    if (!last || at > last.at) last = { at, rows: t.shape[0] };
  }
  return last?.rows;
}

/**
 * What the file holds where it differs from `m`, and the flags that load it: its class count (its last FC's rows),
 * input channels (its first conv's) and the zoo arch its keys fit at those and `m`'s width and head. A mismatch error
 * alone names one key; this says which model the file is. Empty when the file tells nothing beyond the error.
 */
function fileHint(m: VggModel, sd: StateDict): string {
  const asked = m.options;
  const classes = fileClasses(sd) ?? asked.numClasses;
  const first = sd.get("features.0.weight")?.shape;
  const channels = first?.length === 4 ? first[1] : asked.inChannels;
  const fits = zooFits(sd, { ...asked, numClasses: classes, inChannels: channels }).map((f) => f.arch);
  const arch = fits.length > 0 && !fits.includes(m.arch) ? fits[0] : undefined;
  const flags: string[] = [];
  const details: string[] = [];
  if (arch) flags.push(`--arch ${arch}`);
  if (classes !== asked.numClasses) {
    flags.push(`--num-classes ${classes}`);
    details.push(`${classes} classes`);
  }
  if (channels !== asked.inChannels) {
    flags.push(`--in-channels ${channels}`);
    details.push(`${channels} input channel${channels === 1 ? "" : "s"}`);
  }
  if (flags.length === 0) return "";
  const what = arch
    ? `the file fits ${fits.join(" or ")}${details.length > 0 ? ` with ${details.join(" and ")}` : ""}`
    : `the file has ${details.join(" and ")}`;
  return `; ${what}: pass ${flags.join(" ")}`;
}

/** Strict: every key present, no extras, every shape equal. A mismatch says which model the file is, if it can. */
export function matchStateDict(m: VggModel, sdIn: StateDict, file?: string): StateDict {
  const sd = stripModulePrefix(sdIn);
  try {
    return matchStrict(m, sd, file);
  } catch (err) {
    const hint = err instanceof VggError ? fileHint(m, sd) : "";
    if (!(err instanceof VggError) || hint === "") throw err;
    const msg = err.file ? err.message.slice(err.file.length + 2) : err.message;
    throw new VggError(`${msg}${hint}`, err.file);
  }
}

function matchStrict(m: VggModel, sd: StateDict, file?: string): StateDict {
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
