/**
 * The paper's dense evaluation graph (section 3.2): the FC layers become convolutions (fc6 a conv over the last
 * pooled map, fc7 and fc8 1x1) and the network runs over the whole uncropped image; the class score map is
 * averaged spatially. Input [N, C, H, W] with free H and W; output `logits` [N, K] (the averaged scores).
 *
 * fc6 sees the last pooled map through the adaptive 7x7 average pool. At the training size that map is m x m;
 * pool and fc6 together are one linear map of the m x m window, so fc6 becomes an m x m conv with kernel
 * K = Ph^T . W . Pw (Ph, Pw the pool's [7, m] averaging matrices). At m = 7 (224 input) the pool is the identity
 * and K is fc6's weight reshaped: the paper's 7x7 conv. Where the image gives exactly an m x m map, the score map
 * is 1x1 and dense equals the standard forward. K is computed by MatMuls on the weights inside the graph, which
 * ORT folds to a constant when the session is created.
 */
import { VggError } from "../errors.js";
import { GraphBuilder, i, ints } from "../onnx/builder.js";
import type { ModelSpec } from "../onnx/encode.js";
import { adaptiveMatrix } from "../ops/adaptive-pool.js";
import { matrix, reduce, reshape } from "../ops/emit.js";
import type { StateDict } from "../tensor.js";
import type { Layer, VggModel } from "../zoo/model.js";
import { emitInference } from "./walk.js";

/** Smallest final feature map (per side) the dense head can slide over: m for the paper head, 1 for compact. */
export function denseMinMap(m: VggModel): number {
  const pool = m.layers.find((l) => l.name === "avgpool");
  if (!pool) throw new VggError(`${m.arch} has no classifier head`);
  return m.options.head === "paper" ? Math.max(pool.inShape[1], pool.inShape[2]) : 1;
}

export function buildDenseGraph(m: VggModel, weights: StateDict): ModelSpec {
  const g = new GraphBuilder();
  const param = (layer: Layer | string, suffix: string) => {
    const key = `${typeof layer === "string" ? layer : layer.name}.${suffix}`;
    const t = weights.get(key);
    if (!t) throw new VggError(`weights lack '${key}'`);
    return g.initializer(key, t);
  };
  let x = g.input("input", "float32", ["N", m.options.inChannels, "H", "W"]);
  const headAt = m.layers.findIndex((l) => l.name === "avgpool");
  if (headAt < 0) throw new VggError(`${m.arch} has no classifier head`);
  x = emitInference(g, m.layers.slice(0, headAt), x, param);
  const [C, mh, mw] = m.layers[headAt].inShape;
  const conv = (input: string, w: string, b: string, name: string) =>
    g.op1("Conv", [input, w, b], { strides: ints([1, 1]), group: i(1) }, name);
  const linearAsConv = (name: string, inC: number, k: number) => {
    const w = weights.get(`${name}.weight`);
    if (!w) throw new VggError(`weights lack '${name}.weight'`);
    return reshape(g, param(name, "weight"), [w.shape[0], inC, k, k], `${name.replace(/\./g, "_")}_as_conv`);
  };
  let scores: string;
  if (m.options.head === "paper") {
    const hidden = weights.get("classifier.0.weight")?.shape[0];
    if (!hidden) throw new VggError("weights lack 'classifier.0.weight'");
    let k6: string;
    if (mh === 7 && mw === 7) k6 = linearAsConv("classifier.0", C, 7);
    else {
      const w = reshape(g, param("classifier.0", "weight"), [hidden * C, 7, 7]);
      const ph = adaptiveMatrix(mh, 7); // [7, mh]
      const pw = adaptiveMatrix(mw, 7); // [7, mw]
      const phT = g.op1("Transpose", [matrix(g, "fc6_pool_h", [7, mh], ph)], { perm: ints([1, 0]) });
      const k = g.op1("MatMul", [g.op1("MatMul", [phT, w]), matrix(g, "fc6_pool_w", [7, mw], pw)]);
      k6 = reshape(g, k, [hidden, C, mh, mw], "fc6_as_conv");
    }
    x = g.op1("Relu", [conv(x, k6, param("classifier.0", "bias"), "fc6_conv")], undefined, "fc6");
    x = g.op1("Relu", [conv(x, linearAsConv("classifier.3", hidden, 1), param("classifier.3", "bias"), "fc7_conv")], undefined, "fc7");
    scores = conv(x, linearAsConv("classifier.6", hidden, 1), param("classifier.6", "bias"), "score_map");
  } else {
    scores = conv(x, linearAsConv("classifier", C, 1), param("classifier", "bias"), "score_map");
  }
  const logits = reduce(g, "ReduceMean", scores, [2, 3], false, "logits_mean");
  g.output(logits, "logits", "float32", ["N", m.options.numClasses]);
  return g.spec({ arch: m.arch, options: JSON.stringify(m.options), protocol: "dense" });
}
