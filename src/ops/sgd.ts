/**
 * torch.optim.SGD (dampening 0, torch's default; other dampening values are not offered), emitted into the step graph
 * for one parameter:
 *   d_p = grad + weight_decay * p
 *   buf = momentum * buf + d_p           (torch's first step sets buf = d_p: the same as a zero buffer)
 *   d_p = nesterov ? d_p + momentum * buf : buf
 *   p   = p - lr * d_p
 * With momentum 0 there is no buffer: p = p - lr * d_p.
 */
import type { GraphBuilder } from "../onnx/builder.js";

export interface SgdOptions {
  /** Default 0.9 (the paper). */
  momentum?: number;
  /** Default 5e-4 (the paper). */
  weightDecay?: number;
  nesterov?: boolean;
  /**
   * Parameters without weight decay: "none" (torch's default: decay applies to every parameter) or
   * "bn_and_bias" (BatchNorm weights and every bias exempt).
   */
  decayExempt?: "none" | "bn_and_bias";
}

export type ResolvedSgd = Required<SgdOptions>;

export function resolveSgd(o: SgdOptions = {}): ResolvedSgd {
  const r: ResolvedSgd = {
    momentum: o.momentum ?? 0.9,
    weightDecay: o.weightDecay ?? 5e-4,
    nesterov: o.nesterov ?? false,
    decayExempt: o.decayExempt ?? "none",
  };
  if (!(r.momentum >= 0)) throw new Error(`momentum must be >= 0, got ${r.momentum}`);
  if (!(r.weightDecay >= 0)) throw new Error(`weight decay must be >= 0, got ${r.weightDecay}`);
  if (r.nesterov && r.momentum <= 0) throw new Error("Nesterov momentum requires a momentum > 0 (as torch)");
  if (r.decayExempt !== "none" && r.decayExempt !== "bn_and_bias")
    throw new Error(`decayExempt: none or bn_and_bias, got ${r.decayExempt}`);
  return r;
}

/** The update's products of the step's inputs alone: weight_decay * p and momentum * buf (see emitSgdInputTerms). */
export interface SgdInputTerms {
  decayed?: string;
  carried?: string;
}

/**
 * The update's two products that read only the step's inputs, to emit ahead of the backward. ORT's default order
 * is a depth-first walk from the graph's outputs that runs a node's inputs highest node index first: emitted
 * after the backward (as in emitSgd), they ran before the gradient, so three parameter-sized temporaries were held
 * while it was made (vgg16_bn 224x224: 3 x 392 MB for fc6); emitted before, each runs just before the Add that
 * takes it.
 */
export function emitSgdInputTerms(g: GraphBuilder, o: ResolvedSgd, v: { param: string; buf?: string; decay: boolean }): SgdInputTerms {
  return {
    decayed: v.decay && o.weightDecay > 0 ? g.op1("Mul", [v.param, g.scalar(o.weightDecay)]) : undefined,
    carried: o.momentum > 0 && v.buf ? g.op1("Mul", [v.buf, g.scalar(o.momentum)]) : undefined,
  };
}

/**
 * Emit one parameter's update; `lr` is a float32 scalar value. Returns the new parameter and new buffer. `terms`:
 * the products emitSgdInputTerms emitted for it (the same ops, so the same numbers), else they are emitted here.
 */
export function emitSgd(
  g: GraphBuilder,
  o: ResolvedSgd,
  v: { param: string; grad: string; buf?: string; lr: string; decay: boolean; name: string; outParam?: string; outBuf?: string },
  terms: SgdInputTerms = emitSgdInputTerms(g, o, v),
): { param: string; buf?: string } {
  let d = v.grad;
  if (terms.decayed) d = g.op1("Add", [d, terms.decayed], undefined, `${v.name}_dp`);
  let buf: string | undefined;
  if (o.momentum > 0) {
    if (!v.buf || !terms.carried) throw new Error(`${v.name}: momentum buffer missing`);
    buf = v.outBuf
      ? g.op("Add", [terms.carried, d], undefined, { outputs: [v.outBuf], name: `${v.name}_buf` })[0]
      : g.op1("Add", [terms.carried, d], undefined, `${v.name}_buf`);
    d = o.nesterov ? g.op1("Add", [d, g.op1("Mul", [buf, g.scalar(o.momentum)])]) : buf;
  }
  const step = g.op1("Mul", [d, v.lr]);
  const param = v.outParam
    ? g.op("Sub", [v.param, step], undefined, { outputs: [v.outParam], name: `${v.name}_new` })[0]
    : g.op1("Sub", [v.param, step], undefined, `${v.name}_new`);
  return { param, buf };
}
