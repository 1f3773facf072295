/**
 * Softmax cross-entropy with optional label smoothing, as torch.nn.CrossEntropyLoss(label_smoothing=eps) with mean
 * reduction: the target distribution is q = (1 - eps) onehot(y) + eps / K, loss = -mean_n sum_k q log softmax(z),
 * and dL/dz = (softmax(z) - q) / N. Also counts top-1 and top-5 hits (ties: ONNX TopK prefers the lower index).
 */
import type { GraphBuilder } from "../onnx/builder.js";
import { i } from "../onnx/builder.js";
import { reduce, transpose } from "./emit.js";

export interface LossOut {
  loss: string;
  /** dL/dlogits in the training layout [K, N]. */
  dlogits: string;
  /** float32 scalars. */
  correct1: string;
  correct5: string;
}

/** `logits` in the training layout [K, N]; `labels` int64 [N]. */
export function softmaxCrossEntropy(g: GraphBuilder, logits: string, labels: string, K: number, N: number, smoothing = 0): LossOut {
  if (!(smoothing >= 0 && smoothing < 1)) throw new Error(`label smoothing must be in [0, 1), got ${smoothing}`);
  const z = transpose(g, logits, [1, 0]); // [N, K]
  const logp = g.op1("LogSoftmax", [z], { axis: i(1) }, "log_softmax");
  const onehot = g.op1("OneHot", [labels, g.constant("int64", [], [K]), g.constant("float32", [2], [0, 1])], { axis: i(-1) }, "onehot");
  let q = onehot;
  if (smoothing > 0) q = g.op1("Add", [g.op1("Mul", [onehot, g.scalar(1 - smoothing)]), g.scalar(smoothing / K)], undefined, "target");
  const loss = g.op1("Mul", [reduce(g, "ReduceSum", g.op1("Mul", [q, logp]), [0, 1], false), g.scalar(-1 / N)], undefined, "loss_value");
  const dz = g.op1("Mul", [g.op1("Sub", [g.op1("Exp", [logp]), q]), g.scalar(1 / N)], undefined, "dlogits");
  // Top-k hits.
  const k = Math.min(5, K);
  const [, idx] = g.op(
    "TopK",
    [z, g.constant("int64", [1], [k])],
    { axis: i(1), largest: i(1), sorted: i(1) },
    { outputs: ["topk_values", "topk_indices"] },
  );
  const hit = g.op1("Cast", [g.op1("Equal", [idx, g.op1("Unsqueeze", [labels, g.shapeConst([1])])])], { to: i(1) });
  const correct5 = reduce(g, "ReduceSum", hit, [0, 1], false, "correct5_value");
  const first = g.op1("Slice", [hit, g.shapeConst([0]), g.shapeConst([1]), g.shapeConst([1])]);
  const correct1 = reduce(g, "ReduceSum", first, [0, 1], false, "correct1_value");
  return { loss, dlogits: transpose(g, dz, [1, 0]), correct1, correct5 };
}
