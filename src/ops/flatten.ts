import { i } from "../graph/builder.js";
import type { OpKind } from "./types.js";

/** torch.flatten(x, 1): C, H, W order, so torchvision's fc6 weights apply unchanged. */
export const flatten: OpKind<Record<string, never>> = {
  outShape: (_a, x) => [x.reduce((p, d) => p * d, 1)],
  params: () => [],
  macs: () => 0,
  forward: (ctx, _a, x, _in, name) => ctx.g.op1("Flatten", [x], { axis: i(1) }, name),
};
