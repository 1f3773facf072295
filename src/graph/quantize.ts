/**
 * Lower-precision versions of an inference graph (a ModelSpec from graph/infer.ts), as graph rewrites:
 *
 * - fp16 storage: float weights stored as float16 initializers, each followed by a Cast to float32. ONNX Runtime
 *   folds the Casts at load (constant folding), so the session holds float32 weights and runs the same kernels
 *   as the fp32 model; only the file is half the size. (Computing in float16 is also offered, `toFloat16(spec,
 *   "compute")`, for engines with fp16 kernels: ORT's CPU build has few and wraps the rest in Casts.)
 * - int8: static quantization in the QDQ format ONNX Runtime's quantizer writes (QuantizeLinear/DequantizeLinear
 *   pairs around the float ops; ORT's QDQ transformer fuses them into QLinearConv, QGemm, uint8 MaxPool ...).
 *   Weights: symmetric int8, per output channel (Conv axis 0, Gemm the output axis of B). Activations: uint8 or
 *   int8, asymmetric per tensor, ranges from calibration. Biases: int32 with scale = input scale x weight scale.
 *   BatchNorm is folded into the preceding conv first and a ReLU after a conv/FC is absorbed into its output
 *   quantization (a zero point at the bottom of the range clamps at 0 exactly as the ReLU does).
 *
 * Everything here is pure: calibration (running the graph) is done by `calibrate` in graph/precision.ts over ORT.
 */

import type { ModelSpec, NodeSpec, ValueSpec } from "../onnx/encode.js";
import { type DType, numel, type Tensor } from "../tensor.js";

export interface Range {
  min: number;
  max: number;
}

export type ActivationType = "uint8" | "int8";

export interface QuantizeOptions {
  /** Activations' integer type (default uint8: ORT's x86 kernels are U8S8). */
  activations?: ActivationType;
  /** Per-output-channel weight scales (default true); false: one scale per weight tensor. */
  perChannel?: boolean;
  /** 7-bit weights ([-64, 64]), for CPUs without VNNI whose u8 x s8 products can saturate (default false). */
  reduceRange?: boolean;
}

type Inits = Map<string, Tensor>;

function initMap(spec: ModelSpec): Inits {
  return new Map(spec.initializers.map((i) => [i.name, i.tensor]));
}

function consumerMap(nodes: readonly NodeSpec[]): Map<string, NodeSpec[]> {
  const m = new Map<string, NodeSpec[]>();
  for (const n of nodes)
    for (const x of n.inputs) {
      if (!x) continue;
      const l = m.get(x) ?? [];
      m.set(x, l);
      if (!l.includes(n)) l.push(n);
    }
  return m;
}

function intAttr(n: NodeSpec, name: string, dflt: number): number {
  const a = n.attrs?.[name];
  return a && "i" in a ? a.i : dflt;
}

function floatAttr(n: NodeSpec, name: string, dflt: number): number {
  const a = n.attrs?.[name];
  return a && "f" in a ? a.f : dflt;
}

/** Drop initializers no node or output uses. */
export function pruneInitializers(spec: ModelSpec): ModelSpec {
  const used = new Set<string>(spec.outputs.map((o) => o.name));
  for (const n of spec.nodes) for (const x of n.inputs) used.add(x);
  return { ...spec, initializers: spec.initializers.filter((i) => used.has(i.name)) };
}

/**
 * Fold every inference BatchNormalization that follows a Conv with constant weights into that Conv (new weight
 * and bias tensors; the input spec and its tensors are not modified).
 */
export function foldBatchNorm(spec: ModelSpec): ModelSpec {
  const inits = initMap(spec);
  const cons = consumerMap(spec.nodes);
  const producer = new Map<string, NodeSpec>();
  for (const n of spec.nodes) for (const o of n.outputs) producer.set(o, n);
  const outputs = new Set(spec.outputs.map((o) => o.name));
  const replaced = new Map<string, Tensor>();
  const added: { name: string; tensor: Tensor }[] = [];
  const drop = new Set<NodeSpec>();
  const rewritten = new Map<NodeSpec, NodeSpec>();
  for (const bn of spec.nodes) {
    if (bn.opType !== "BatchNormalization" || bn.outputs.length !== 1) continue;
    const conv = producer.get(bn.inputs[0]);
    if (conv?.opType !== "Conv" || rewritten.has(conv)) continue;
    if ((cons.get(conv.outputs[0]) ?? []).length !== 1 || outputs.has(conv.outputs[0])) continue;
    const w = inits.get(conv.inputs[1]);
    const b = conv.inputs[2] ? inits.get(conv.inputs[2]) : undefined;
    const [gamma, beta, mean, variance] = bn.inputs.slice(1, 5).map((x) => inits.get(x));
    if (w?.dtype !== "float32" || (conv.inputs[2] && !b) || !gamma || !beta || !mean || !variance) continue;
    if ((cons.get(conv.inputs[1]) ?? []).length !== 1) continue;
    const eps = floatAttr(bn, "epsilon", 1e-5);
    const O = w.shape[0];
    const per = w.data.length / O;
    const wd = w.data as Float32Array;
    const nw = new Float32Array(wd.length);
    const nb = new Float32Array(O);
    for (let o = 0; o < O; o++) {
      const k = (gamma.data as Float32Array)[o] / Math.sqrt((variance.data as Float32Array)[o] + eps);
      for (let j = 0; j < per; j++) nw[o * per + j] = wd[o * per + j] * k;
      const b0 = b ? (b.data as Float32Array)[o] : 0;
      nb[o] = (b0 - (mean.data as Float32Array)[o]) * k + (beta.data as Float32Array)[o];
    }
    replaced.set(conv.inputs[1], { dtype: "float32", shape: [...w.shape], data: nw });
    let biasName = conv.inputs[2];
    if (biasName) replaced.set(biasName, { dtype: "float32", shape: [O], data: nb });
    else {
      biasName = `${conv.inputs[1]}_bn_bias`;
      added.push({ name: biasName, tensor: { dtype: "float32", shape: [O], data: nb } });
    }
    rewritten.set(conv, { ...conv, inputs: [conv.inputs[0], conv.inputs[1], biasName], outputs: [bn.outputs[0]] });
    drop.add(bn);
  }
  const nodes = spec.nodes.filter((n) => !drop.has(n)).map((n) => rewritten.get(n) ?? n);
  const initializers = [...spec.initializers.map((i) => ({ name: i.name, tensor: replaced.get(i.name) ?? i.tensor })), ...added];
  return pruneInitializers({ ...spec, nodes, initializers });
}

// ---------------------------------------------------------------------------------------------------------------
// fp16

/** `storage`: fp16 initializers cast to float32 at load. `compute`: the whole graph in float16 (float32 edges). */
export function toFloat16(
  spec: ModelSpec,
  mode: "storage" | "compute",
  convert: (x: Float32Array) => Uint16Array,
  minElements = 256,
): ModelSpec {
  const casts: NodeSpec[] = [];
  const initializers = spec.initializers.map(({ name, tensor }) => {
    if (tensor.dtype !== "float32" || (mode === "storage" && tensor.data.length < minElements)) return { name, tensor };
    const half: Tensor = { dtype: "float16", shape: [...tensor.shape], data: convert(tensor.data as Float32Array) };
    if (mode === "compute") return { name, tensor: half };
    const h = `${name}_fp16`;
    casts.push({ opType: "Cast", inputs: [h], outputs: [name], attrs: { to: { i: 1 } }, name: `cast_${name}` });
    return { name: h, tensor: half };
  });
  if (mode === "storage") {
    return { ...spec, initializers, nodes: [...casts, ...spec.nodes], docString: spec.docString };
  }
  // compute: float32 graph inputs are cast in, float32 outputs cast out; attributes holding float tensors are
  // not used by the inference graphs.
  const inRename = new Map<string, string>();
  const pre: NodeSpec[] = [];
  for (const v of spec.inputs) {
    if (v.dtype !== "float32") continue;
    const h = `${v.name}_fp16`;
    inRename.set(v.name, h);
    pre.push({ opType: "Cast", inputs: [v.name], outputs: [h], attrs: { to: { i: 10 } }, name: `cast_${v.name}` });
  }
  const outNames = new Set(spec.outputs.filter((o) => o.dtype === "float32").map((o) => o.name));
  const post: NodeSpec[] = [];
  const nodes = spec.nodes.map((n) => {
    const inputs = n.inputs.map((x) => inRename.get(x) ?? x);
    const outputs = n.outputs.map((o) => (outNames.has(o) ? `${o}_fp16` : o));
    for (const o of n.outputs)
      if (outNames.has(o)) post.push({ opType: "Cast", inputs: [`${o}_fp16`], outputs: [o], attrs: { to: { i: 1 } }, name: `cast_${o}` });
    return { ...n, inputs, outputs };
  });
  return { ...spec, initializers, nodes: [...pre, ...nodes, ...post] };
}

// ---------------------------------------------------------------------------------------------------------------
// int8 (QDQ)

/** Ops with constant weights that get int8 weights and quantized inputs. */
const COMPUTE = new Set(["Conv", "Gemm"]);
/** Ops that move or select values: their output keeps their input's scale (ORT runs them on the integers). */
const SAME_SCALE = new Set(["MaxPool", "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze"]);
/** Ops with quantized ORT kernels and an output range of their own. */
const OWN_SCALE = new Set(["AveragePool", "GlobalAveragePool"]);

function isCompute(n: NodeSpec, inits: Inits): boolean {
  if (!COMPUTE.has(n.opType) || !inits.has(n.inputs[1])) return false;
  if (n.opType === "Gemm" && (intAttr(n, "transA", 0) !== 0 || floatAttr(n, "alpha", 1) !== 1 || floatAttr(n, "beta", 1) !== 1))
    return false;
  if (n.inputs[2] && !inits.has(n.inputs[2])) return false;
  return inits.get(n.inputs[1])?.dtype === "float32";
}

/**
 * Which nodes run quantized and which tensors get a QDQ pair. A tensor is a point when a quantized op reads it
 * (as its data input). Pools and reshapes always run quantized; FCs too (QGemm may output float); a Conv only when
 * its output (after a following ReLU) is a point: QLinearConv must end in a Q, and a Conv that cannot is left in
 * float with its float weights (e.g. before an LRN, or the last layer of a feature extractor).
 */
function analysis(spec: ModelSpec, inits: Inits) {
  const cons = consumerMap(spec.nodes);
  const memo = new Map<NodeSpec, boolean>();
  const isPoint = (t: string): boolean => (cons.get(t) ?? []).some((c) => c.inputs[0] === t && quantizable(c));
  const quantizable = (n: NodeSpec): boolean => {
    if (SAME_SCALE.has(n.opType) || OWN_SCALE.has(n.opType)) return true;
    if (!isCompute(n, inits)) return false;
    if (n.opType !== "Conv") return true;
    let q = memo.get(n);
    if (q === undefined) {
      let o = n.outputs[0];
      const c = cons.get(o) ?? [];
      if (c.length === 1 && c[0].opType === "Relu") o = c[0].outputs[0];
      q = isPoint(o);
      memo.set(n, q);
    }
    return q;
  };
  return { cons, isPoint, quantizable };
}

/** Conv/Gemm -> Relu where the Relu's output gets quantized: the Relu goes, the Q's clamp at 0 does its work. */
function fuseRelu(spec: ModelSpec, inits: Inits): ModelSpec {
  const { cons, isPoint, quantizable } = analysis(spec, inits);
  const outputs = new Set(spec.outputs.map((o) => o.name));
  const drop = new Set<NodeSpec>();
  const out = new Map<NodeSpec, string>();
  for (const n of spec.nodes) {
    if (!quantizable(n) || !COMPUTE.has(n.opType) || outputs.has(n.outputs[0])) continue;
    const c = cons.get(n.outputs[0]) ?? [];
    if (c.length !== 1 || c[0].opType !== "Relu" || !isPoint(c[0].outputs[0])) continue;
    drop.add(c[0]);
    out.set(n, c[0].outputs[0]);
  }
  const nodes = spec.nodes.filter((n) => !drop.has(n)).map((n) => (out.has(n) ? { ...n, outputs: [out.get(n) as string] } : n));
  return { ...spec, nodes };
}

/** Where the QDQ pairs go. */
export interface QuantPlan {
  /** Quantization points, in graph order, each mapped to the tensor whose calibrated range it uses. */
  points: Map<string, string>;
  /** Tensors whose ranges calibration must measure (the graph input among them, if it is a point). */
  calibrate: string[];
  /** Nodes that run quantized. */
  quantized: Set<NodeSpec>;
}

function planOf(spec: ModelSpec, inits: Inits): QuantPlan {
  const { isPoint, quantizable } = analysis(spec, inits);
  const producer = new Map<string, NodeSpec>();
  for (const n of spec.nodes) for (const o of n.outputs) producer.set(o, n);
  const points = new Map<string, string>();
  const visit = (t: string) => {
    if (!isPoint(t)) return;
    const p = producer.get(t);
    const src = p && SAME_SCALE.has(p.opType) ? points.get(p.inputs[0]) : undefined;
    points.set(t, src ?? t);
  };
  for (const v of spec.inputs) visit(v.name);
  for (const n of spec.nodes) for (const o of n.outputs) visit(o);
  const calibrate = [...new Set(points.values())];
  return { points, calibrate, quantized: new Set(spec.nodes.filter(quantizable)) };
}

/** The graph the quantizer will rewrite: BN folded, ReLUs after convs/FCs absorbed. */
function prepared(spec: ModelSpec): { spec: ModelSpec; folded: ModelSpec; inits: Inits } {
  const folded = foldBatchNorm(spec);
  const inits = initMap(folded);
  return { spec: fuseRelu(folded, inits), folded, inits };
}

/** The float graph calibration runs, with the names of the tensors whose ranges it measures. */
export interface CalibrationGraph {
  /** The inference graph (BN folded) with every tensor the quantizer needs as an extra output. */
  spec: ModelSpec;
  /** Extra outputs to read. */
  tensors: string[];
  /** Graph inputs that are quantization points too: their ranges come from the data fed. */
  inputs: string[];
}

/**
 * The float graph calibration runs: BN folded, with every tensor whose range the quantizer needs as an extra
 * output (graph inputs are not repeated: their ranges come from the data fed).
 */
export function calibrationGraph(spec: ModelSpec): CalibrationGraph {
  return calibrationOf(prepared(spec));
}

function calibrationOf(p: ReturnType<typeof prepared>): CalibrationGraph {
  const plan = planOf(p.spec, p.inits);
  const inputNames = new Set(p.folded.inputs.map((v) => v.name));
  const have = new Set(p.folded.outputs.map((o) => o.name));
  const extra: ValueSpec[] = plan.calibrate
    .filter((t) => !inputNames.has(t) && !have.has(t))
    .map((name) => ({ name, dtype: "float32", dims: null }));
  return {
    spec: { ...p.folded, outputs: [...p.folded.outputs, ...extra] },
    tensors: plan.calibrate.filter((t) => !inputNames.has(t)),
    inputs: plan.calibrate.filter((t) => inputNames.has(t)),
  };
}

const RNE = 2 ** 52 + 2 ** 51;

/** Round half to even, as QuantizeLinear does (exact for |x| < 2^51: adding 1.5 * 2^52 leaves no fraction bits). */
export function roundEven(x: number): number {
  return Math.abs(x) < 2 ** 51 ? x + RNE - RNE : x;
}

/** Affine parameters of a per-tensor activation range (the range is widened to hold 0, which must be exact). */
export function activationParams(r: Range, type: ActivationType): { scale: number; zeroPoint: number } {
  const [qmin, qmax] = type === "uint8" ? [0, 255] : [-128, 127];
  const lo = Math.min(0, r.min);
  const hi = Math.max(0, r.max);
  let scale = (hi - lo) / (qmax - qmin);
  if (!(scale > 0) || !Number.isFinite(scale)) scale = 1;
  const zeroPoint = Math.max(qmin, Math.min(qmax, roundEven(qmin - lo / scale)));
  return { scale, zeroPoint };
}

/** Symmetric int8 weights along `axis` (or one scale for all when perChannel is false). */
export function quantizeWeight(w: Tensor, axis: number, perChannel: boolean, reduceRange: boolean): { q: Int8Array; scales: Float32Array } {
  const data = w.data as Float32Array;
  const qmax = reduceRange ? 64 : 127;
  const C = perChannel ? w.shape[axis] : 1;
  // Element k belongs to channel floor(k / inner) % C: blocks of `inner` values cycle through the channels.
  const inner = perChannel ? numel(w.shape.slice(axis + 1)) : data.length;
  const absmax = new Float32Array(C);
  for (let start = 0, c = 0; start < data.length; start += inner, c = (c + 1) % C) {
    let m = absmax[c];
    for (let k = start; k < start + inner; k++) {
      const a = Math.abs(data[k]);
      if (a > m) m = a;
    }
    absmax[c] = m;
  }
  const scales = new Float32Array(C);
  for (let c = 0; c < C; c++) scales[c] = absmax[c] > 0 ? absmax[c] / qmax : 1;
  const q = new Int8Array(data.length);
  for (let start = 0, c = 0; start < data.length; start += inner, c = (c + 1) % C) {
    const s = scales[c];
    for (let k = start; k < start + inner; k++) {
      const v = data[k] / s + RNE - RNE;
      q[k] = Math.max(-qmax, Math.min(qmax, v));
    }
  }
  return { q, scales };
}

/**
 * Rewrite a float inference graph into QDQ form with the given ranges (keyed by the names `calibrationGraph`
 * lists, graph inputs included). The result computes in int8 once ONNX Runtime fuses it.
 */
export function quantizeGraph(spec: ModelSpec, ranges: Map<string, Range>, opts: QuantizeOptions = {}): ModelSpec {
  return prepareQuantization(spec, opts).finish(ranges);
  // (the calibration graph is not taken: it is garbage with the rest)
}

/**
 * Quantization in two steps, to keep peak memory near one copy of the float weights: the weights are quantized
 * now, and `finish` (after calibration) holds only the int8 ones. The float weights live on in the calibration
 * graph alone (`takeCalibration`, once), which the caller hands to the engine and drops, with `spec`, before the
 * engine loads it.
 */
export function prepareQuantization(
  spec: ModelSpec,
  opts: QuantizeOptions = {},
): { takeCalibration(): CalibrationGraph; finish(ranges: Map<string, Range>): ModelSpec } {
  const act: ActivationType = opts.activations ?? "uint8";
  const perChannel = opts.perChannel ?? true;
  const p = prepared(spec);
  const plan = planOf(p.spec, p.inits);
  let calibration: CalibrationGraph | undefined = calibrationOf(p);
  // Weights of the quantized Conv/Gemm nodes, in int8; their float tensors are left out of what finish() keeps.
  const weights = new Map<string, { q: Int8Array; scales: Float32Array; shape: number[]; axis: number }>();
  for (const n of p.spec.nodes) {
    if (!plan.quantized.has(n) || !COMPUTE.has(n.opType)) continue;
    const w = p.inits.get(n.inputs[1]) as Tensor;
    const axis = n.opType === "Gemm" && intAttr(n, "transB", 0) === 0 ? 1 : 0;
    weights.set(n.inputs[1], { ...quantizeWeight(w, axis, perChannel, opts.reduceRange ?? false), shape: [...w.shape], axis });
  }
  const s: ModelSpec = { ...p.spec, initializers: p.spec.initializers.filter((i) => !weights.has(i.name)) };
  const biases = new Map(s.initializers.map((i) => [i.name, i.tensor]));
  return {
    takeCalibration() {
      const c = calibration;
      calibration = undefined;
      if (!c) throw new Error("the calibration graph was taken already");
      return c;
    },
    finish: (ranges) => finishQuantization(s, plan, weights, biases, ranges, act, perChannel),
  };
}

function finishQuantization(
  s: ModelSpec,
  plan: QuantPlan,
  weights: Map<string, { q: Int8Array; scales: Float32Array; shape: number[]; axis: number }>,
  inits: Map<string, Tensor>,
  ranges: Map<string, Range>,
  act: ActivationType,
  perChannel: boolean,
): ModelSpec {
  const initializers = [...s.initializers];
  const add = (name: string, dtype: DType, shape: number[], data: Tensor["data"]): string => {
    initializers.push({ name, tensor: { dtype, shape, data } });
    return name;
  };
  // One scale/zero-point pair per calibrated range, shared by the points that inherit it (MaxPool's DQ and Q must
  // carry identical parameters for ORT to drop them and pool the integers).
  const params = new Map<string, { scale: number; s: string; z: string }>();
  const paramsOf = (src: string) => {
    let p = params.get(src);
    if (!p) {
      const r = ranges.get(src);
      if (!r) throw new Error(`no calibrated range for '${src}'`);
      const { scale, zeroPoint } = activationParams(r, act);
      const zp = act === "uint8" ? Uint8Array.of(zeroPoint) : Int8Array.of(zeroPoint);
      p = { scale, s: add(`${src}_scale`, "float32", [], Float32Array.of(scale)), z: add(`${src}_zero_point`, act, [], zp) };
      params.set(src, p);
    }
    return p;
  };
  // A point that is also a graph output (a requested tap) is output through a DQ of its own, so the producer
  // still ends in a Q and fuses (a DQ shared by the output and the next op keeps ORT from fusing with int8).
  const outNames = new Set(s.outputs.map((o) => o.name));
  const fl = (t: string) => (plan.points.has(t) && outNames.has(t) ? `${t}_float` : t);
  const dq = (t: string) => (plan.points.has(t) ? `${t}_dq` : t);
  const qdq = (t: string): NodeSpec[] => {
    const p = paramsOf(plan.points.get(t) as string);
    const out: NodeSpec[] = [
      { opType: "QuantizeLinear", inputs: [fl(t), p.s, p.z], outputs: [`${t}_q`], name: `q_${t}` },
      { opType: "DequantizeLinear", inputs: [`${t}_q`, p.s, p.z], outputs: [dq(t)], name: `dq_${t}` },
    ];
    if (outNames.has(t)) out.push({ opType: "DequantizeLinear", inputs: [`${t}_q`, p.s, p.z], outputs: [t], name: `dq_out_${t}` });
    return out;
  };
  const nodes: NodeSpec[] = [];
  for (const v of s.inputs) if (plan.points.has(v.name)) nodes.push(...qdq(v.name));
  for (const n of s.nodes) {
    const inputs = n.inputs.map(dq);
    const w = weights.get(n.inputs[1]);
    if (plan.quantized.has(n) && COMPUTE.has(n.opType) && w) {
      const xs = paramsOf(plan.points.get(n.inputs[0]) as string).scale;
      const { q, scales } = w;
      const C = scales.length;
      const wn = n.inputs[1];
      add(`${wn}_quantized`, "int8", w.shape, q);
      const wsc = add(`${wn}_scale`, "float32", perChannel ? [C] : [], scales);
      const wzp = add(`${wn}_zero_point`, "int8", perChannel ? [C] : [], new Int8Array(C));
      const axisAttr = perChannel ? { axis: { i: w.axis } } : undefined;
      nodes.push({
        opType: "DequantizeLinear",
        inputs: [`${wn}_quantized`, wsc, wzp],
        outputs: [`${wn}_dq`],
        attrs: axisAttr,
        name: `dq_${wn}`,
      });
      inputs[1] = `${wn}_dq`;
      if (n.inputs[2]) {
        // int32 bias with scale = input scale x weight scale (what QLinearConv and QGemm add in).
        const bn = n.inputs[2];
        const bd = (inits.get(bn) as Tensor).data as Float32Array;
        const bs = new Float32Array(bd.length);
        const bq = new Int32Array(bd.length);
        for (let c = 0; c < bd.length; c++) {
          bs[c] = xs * scales[perChannel ? c : 0];
          bq[c] = Math.max(-(2 ** 31), Math.min(2 ** 31 - 1, roundEven(bd[c] / bs[c])));
        }
        add(`${bn}_quantized`, "int32", [bd.length], bq);
        add(`${bn}_scale`, "float32", [bd.length], bs);
        nodes.push({
          opType: "DequantizeLinear",
          inputs: [`${bn}_quantized`, `${bn}_scale`],
          outputs: [`${bn}_dq`],
          attrs: { axis: { i: 0 } },
          name: `dq_${bn}`,
        });
        inputs[2] = `${bn}_dq`;
      }
    }
    nodes.push({ ...n, inputs, outputs: n.outputs.map(fl) });
    for (const o of n.outputs) if (plan.points.has(o)) nodes.push(...qdq(o));
  }
  const opsets = s.opsets.map((o) => (o.domain === "" && o.version < 13 ? { ...o, version: 13 } : o));
  return pruneInitializers({ ...s, nodes, initializers, opsets });
}
