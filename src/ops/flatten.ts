import { i } from "../onnx/builder.js";
import { numel } from "../tensor.js";
import { reshape } from "./emit.js";
import type { OpKind } from "./types.js";

/**
 * torch.flatten(x, 1): C, H, W order, so torchvision's fc6 weights apply unchanged. In the training layout
 * ([C, H, W, N] -> [C*H*W, N]) that order is the memory order already: a reshape both ways.
 */
export const flatten: OpKind<Record<string, never>> = {
  outShape: (_a, x) => [numel(x)],
  params: () => [],
  macs: () => 0,
  forward: (ctx, _a, x, _in, name) => ctx.g.op1("Flatten", [x], { axis: i(1) }, name),
  trainForward: (ctx, _a, x, inShape, name) => ({
    y: reshape(ctx.g, x, [numel(inShape), ctx.batch], name),
    saved: {},
  }),
  backward: (ctx, _a, { dy, inShape, name, needDx }) =>
    needDx ? { dx: reshape(ctx.g, dy, [...inShape, ctx.batch], `${name}_dx`), grads: {} } : { grads: {} },
};
