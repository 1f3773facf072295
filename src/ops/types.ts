/**
 * What every op kind provides, in one place per kind: its output shape, its parameters, its cost and its
 * ONNX emission. Shapes here are per sample (C, H, W or F); the batch dimension is always the graph's free "N".
 */
import type { GraphBuilder } from "../graph/builder.js";

export type Shape = number[];

export interface ParamSpec {
  /** torchvision's key suffix: weight, bias, running_mean, running_var, num_batches_tracked. */
  suffix: string;
  shape: number[];
  dtype: "float32" | "int64";
  /** Updated by SGD (weights, biases) rather than by statistics (BN buffers). */
  trainable: boolean;
}

export interface EmitCtx {
  g: GraphBuilder;
  /** The graph value holding this layer's parameter `suffix`. */
  param(suffix: string): string;
  training: boolean;
}

export interface OpKind<A> {
  outShape(a: A, x: Shape): Shape;
  params(a: A, x: Shape): ParamSpec[];
  /** Multiply-accumulates per sample (what the GFLOPs tables count: convs and FCs). */
  macs(a: A, x: Shape): number;
  /** Emit the inference-mode forward of one layer; returns the output value's name. */
  forward(ctx: EmitCtx, a: A, x: string, inShape: Shape, name: string): string;
}

export function checkRank(kind: string, x: Shape, rank: number): void {
  if (x.length !== rank) throw new Error(`${kind} wants a rank-${rank} input per sample, got [${x.join(", ")}]`);
}
