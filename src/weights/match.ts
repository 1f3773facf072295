/**
 * Fit a loaded state_dict to a model: every key present, no extras, every shape equal; values converted to the
 * model's dtypes. Errors name the key and both shapes, which is what tells a user they paired the wrong arch.
 */
import { VggError } from "../errors.js";
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

export function matchStateDict(m: VggModel, sdIn: StateDict, file?: string): StateDict {
  const sd = stripModulePrefix(sdIn);
  const spec = stateSpec(m);
  const want = new Set(spec.map((e) => e.key));
  const out: StateDict = new Map();
  const desc = `${m.arch} (${m.options.head} head, ${m.options.numClasses} classes, width /${m.options.widthDivisor})`;
  for (const { key, param } of spec) {
    const t = sd.get(key);
    if (!t) {
      // Older torchvision files predate BN's counter; it carries no numbers the forward pass needs.
      if (param.suffix === "num_batches_tracked") {
        out.set(key, { dtype: "int64", shape: [], data: new BigInt64Array(1) });
        continue;
      }
      throw new VggError(`missing key '${key}' (shape ${shapeStr(param.shape)}) for ${desc}`, file);
    }
    const sameShape = t.shape.length === param.shape.length && t.shape.every((d, k) => d === param.shape[k]);
    if (!sameShape) {
      throw new VggError(`key '${key}' has shape ${shapeStr(t.shape)}, ${desc} needs ${shapeStr(param.shape)}`, file);
    }
    if (param.dtype === "int64") {
      const v = t.dtype === "int64" ? (t.data as BigInt64Array) : BigInt64Array.from([BigInt(Math.trunc(Number(t.data[0] ?? 0)))]);
      out.set(key, { dtype: "int64", shape: param.shape, data: v });
      continue;
    }
    let data: Float32Array;
    try {
      data = toFloat32(t);
    } catch (err) {
      throw new VggError(`key '${key}': ${(err as Error).message}`, file);
    }
    if (data.length !== numel(param.shape))
      throw new VggError(`key '${key}' holds ${data.length} values for shape ${shapeStr(param.shape)}`, file);
    out.set(key, { dtype: "float32", shape: param.shape, data });
  }
  const extra = [...sd.keys()].filter((k) => !want.has(k));
  if (extra.length) {
    const shown = extra
      .slice(0, 3)
      .map((k) => `'${k}' ${shapeStr(sd.get(k)?.shape ?? [])}`)
      .join(", ");
    throw new VggError(
      `unexpected key${extra.length > 1 ? "s" : ""} ${shown}${extra.length > 3 ? ` and ${extra.length - 3} more` : ""} for ${desc}`,
      file,
    );
  }
  return out;
}
