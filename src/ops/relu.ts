import type { OpKind } from "./types.js";

/** ReLU; its gradient passes dy where the output is positive (PyTorch's threshold_backward: 0 at 0). */
export const relu: OpKind<Record<string, never>> = {
  outShape: (_a, x) => x,
  params: () => [],
  macs: () => 0,
  forward: (ctx, _a, x, _in, name) => ctx.g.op1("Relu", [x], undefined, name),
  trainForward(ctx, _a, x, _in, name) {
    const y = ctx.g.op1("Relu", [x], undefined, name);
    return { y, saved: { y } };
  },
  backward(ctx, _a, saved, dy, _in, name, needDx) {
    if (!needDx) return { grads: {} };
    const g = ctx.g;
    const dx = g.op1("Where", [g.op1("Greater", [saved.y, g.scalar(0)]), dy, g.scalar(0)], undefined, `${name}_dx`);
    return { dx, grads: {} };
  },
};
