import { numel } from "../tensor.js";
import { emitCounterRandom, reshape } from "./emit.js";
import type { OpKind, TrainForward } from "./types.js";

/** Inverted dropout; the identity at inference, so nothing is emitted there. */
export interface DropoutAttrs {
  p: number;
}

/**
 * Training: y = x * mask / (1 - p) with mask = [u < (1 - p) 2^32], u the counter-based hash of (seed, layer salt,
 * element index) (see emitCounterRandom): reproducible from the step's seed alone, in any session. Backward: the
 * same scaled mask times dy.
 */
export const dropout: OpKind<DropoutAttrs> = {
  outShape: (_a, x) => x,
  params: () => [],
  macs: () => 0,
  forward: (_ctx, _a, x) => x,
  trainForward(ctx, a, x, inShape, name): TrainForward {
    if (a.p <= 0) return { y: x, saved: {} };
    const g = ctx.g;
    const shape = [...inShape, ctx.batch];
    const count = numel(shape);
    const u = emitCounterRandom(g, ctx.seed, ctx.salt, count);
    const keep = g.op1("Less", [u, g.constant("int64", [], [Math.floor((1 - a.p) * 2 ** 32)])]);
    const mask = g.op1("Mul", [g.op1("Cast", [keep], { to: { i: 1 } }), g.scalar(1 / (1 - a.p))], undefined, `${name}_mask`);
    const m = reshape(g, mask, shape);
    return { y: g.op1("Mul", [x, m], undefined, name), saved: { mask: m } };
  },
  backward(ctx, a, { saved, dy, name, needDx }) {
    if (!needDx) return { grads: {} };
    if (a.p <= 0) return { dx: dy, grads: {} };
    return { dx: ctx.g.op1("Mul", [dy, saved.mask], undefined, `${name}_dx`), grads: {} };
  },
};
