/**
 * The inference graph: weights as initializers (ORT's fastest conv path needs them constant), a free batch
 * dimension, and one output per requested tap. Layers after the last requested tap are not emitted.
 */
import { VggError } from "../errors.js";
import { GraphBuilder } from "../onnx/builder.js";
import { encodeModel, type ModelSpec } from "../onnx/encode.js";
import type { StateDict } from "../tensor.js";
import { type Layer, tapNames, type VggModel } from "../zoo/model.js";
import { emitInference } from "./walk.js";
import { emitWinogradInference, type WinogradChoice } from "./winograd-infer.js";

export interface InferenceGraphOptions {
  /** Tap names to output (default: ["logits"]). */
  taps?: string[];
  /** Name of the graph input (default "input"). */
  inputName?: string;
  /** Winograd F(4x4, 3x3) for 3x3 convs (graph/winograd-infer.ts): "auto" where it measured faster, "on", "off". */
  winograd?: WinogradChoice;
}

export function buildInferenceGraph(m: VggModel, weights: StateDict, opts: InferenceGraphOptions = {}): ModelSpec {
  const taps = opts.taps ?? ["logits"];
  const known = tapNames(m);
  for (const t of taps) {
    if (!known.includes(t)) throw new VggError(`unknown tap '${t}' for ${m.arch} (known: ${known.join(", ")})`);
  }
  const g = new GraphBuilder();
  const x = g.input(opts.inputName ?? "input", "float32", ["N", ...m.inputShape]);
  const last = Math.max(...taps.map((t) => m.layers.findIndex((l) => l.tap === t)));
  const tapValues = new Map<string, { value: string; shape: number[] }>();
  const param = (layer: Layer, suffix: string) => {
    const key = `${layer.name}.${suffix}`;
    const t = weights.get(key);
    if (!t) throw new VggError(`weights lack '${key}'`);
    return g.initializer(key, t);
  };
  const each = (layer: Layer, y: string) => {
    if (layer.tap) tapValues.set(layer.tap, { value: y, shape: layer.outShape });
  };
  const layers = m.layers.slice(0, last + 1);
  const choice = opts.winograd ?? "off";
  if (choice === "off") emitInference(g, layers, x, param, each);
  else emitWinogradInference(g, layers, x, param, { choice, taps: new Set(taps), each });
  for (const t of taps) {
    const v = tapValues.get(t);
    if (!v) throw new Error(`tap ${t} not emitted`);
    g.output(v.value, t, "float32", ["N", ...v.shape]);
  }
  return g.spec({ arch: m.arch, options: JSON.stringify(m.options) });
}

export function encodeInferenceGraph(m: VggModel, weights: StateDict, opts: InferenceGraphOptions = {}): Uint8Array {
  return encodeModel(buildInferenceGraph(m, weights, opts));
}
