import { adaptivePool } from "./adaptive-pool.js";
import { batchnorm } from "./batchnorm.js";
import { conv } from "./conv.js";
import { dropout } from "./dropout.js";
import { flatten } from "./flatten.js";
import { linear } from "./linear.js";
import { lrn } from "./lrn.js";
import { maxpool } from "./maxpool.js";
import { relu } from "./relu.js";
import type { OpKind } from "./types.js";

export const OPS = {
  conv,
  batchnorm,
  relu,
  lrn,
  maxpool,
  adaptive_avgpool: adaptivePool,
  flatten,
  linear,
  dropout,
} as const;

export type OpName = keyof typeof OPS;
export type AttrsOf<K extends OpName> = (typeof OPS)[K] extends OpKind<infer A> ? A : never;

/** The op kind of a layer, erased to a common attrs type for generic walks over a layer list. */
export function opOf(kind: OpName): OpKind<unknown> {
  return OPS[kind] as OpKind<never> as OpKind<unknown>;
}
export type { OpKind, ParamSpec, Shape } from "./types.js";
