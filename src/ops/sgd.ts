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

/** Emit one parameter's update; `lr` is a float32 scalar value. Returns the new parameter and new buffer. */
export function emitSgd(
  g: GraphBuilder,
  o: ResolvedSgd,
  v: { param: string; grad: string; buf?: string; lr: string; decay: boolean; name: string; outParam?: string; outBuf?: string },
): { param: string; buf?: string } {
  let d = v.grad;
  if (v.decay && o.weightDecay > 0) d = g.op1("Add", [d, g.op1("Mul", [v.param, g.scalar(o.weightDecay)])], undefined, `${v.name}_dp`);
  let buf: string | undefined;
  if (o.momentum > 0) {
    if (!v.buf) throw new Error(`${v.name}: momentum buffer missing`);
    buf = v.outBuf
      ? g.op("Add", [g.op1("Mul", [v.buf, g.scalar(o.momentum)]), d], undefined, { outputs: [v.outBuf], name: `${v.name}_buf` })[0]
      : g.op1("Add", [g.op1("Mul", [v.buf, g.scalar(o.momentum)]), d], undefined, `${v.name}_buf`);
    d = o.nesterov ? g.op1("Add", [d, g.op1("Mul", [buf, g.scalar(o.momentum)])]) : buf;
  }
  const step = g.op1("Mul", [d, v.lr]);
  const param = v.outParam
    ? g.op("Sub", [v.param, step], undefined, { outputs: [v.outParam], name: `${v.name}_new` })[0]
    : g.op1("Sub", [v.param, step], undefined, `${v.name}_new`);
  return { param, buf };
}
