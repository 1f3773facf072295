/**
 * What every op kind provides, in one place per kind: its output shape, its parameters, its cost and its
 * ONNX emission. Shapes here are per sample (C, H, W or F); the batch dimension is always the graph's free "N".
 */
import type { GraphBuilder } from "../onnx/builder.js";
import type { Device } from "../runtime/session.js";

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
}

/**
 * Emission context of the training step. Activations there are feature-major with the batch innermost:
 * [C, H, W, N] for maps and [F, N] for vectors. That makes every convolution one GEMM over the whole batch
 * (columns = H*W*N), BN statistics a reduction over one contiguous axis, and flatten a free reshape.
 */
export interface TrainCtx {
  g: GraphBuilder;
  /** The graph value holding this layer's parameter (or buffer) `suffix`. */
  param(suffix: string): string;
  /** The step graph's batch size (fixed per graph). */
  batch: number;
  /** int64 scalar: the step's random seed (dropout masks are a hash of seed, salt and element index). */
  seed: string;
  /** An integer unique to the layer in its model, mixed into the seed. */
  salt: number;
  /** How a conv is computed (the walker's choice per layer; see conv.ts). Default "im2col". */
  convAlgo?: "im2col" | "winograd" | "nchw";
  /** How a conv's weight gradient is computed. Default "im2col". */
  convWeightGrad?: "im2col" | "winograd" | "taps";
  /**
   * The execution provider the graph is for (default "cpu"). On "webgpu" the ops emit the forms ORT's WebGPU provider
   * runs: it rejects BatchNormalization in training mode (as onnxruntime-web's does), and has no bool logic (Xor,
   * And) nor Slice of bools, which would put whole masks on the CPU with copies each way (measured: 10 such Slices
   * per step, bench/results/webgpu.md). The CPU graph is the same either way.
   */
  device?: Device;
  /** Layer-pairing facts the walker knows, for fused emission. */
  fuse?: {
    /** conv: a BatchNorm follows, so the bias is left out of the GEMM (BN removes any per-channel constant); the
     * bias gets an exactly-zero gradient and the BN adds it back to the batch mean for its running statistics. */
    biasIntoBn?: boolean;
    /** batchnorm: the preceding conv's bias value, to add to the batch mean (see biasIntoBn). */
    convBias?: string;
    /** relu: a max-pool follows and applies the ReLU after pooling (this layer is the identity). */
    reluIntoPool?: boolean;
    /** maxpool: the preceding ReLU was left to this layer (see reluIntoPool). */
    reluBefore?: boolean;
  };
}

/** What a layer's training forward leaves: the output, values kept for its backward, and new buffer values. */
export interface TrainForward {
  y: string;
  saved: Record<string, string>;
  /** New values of non-trainable state, by suffix (BN: running_mean, running_var, num_batches_tracked). */
  state?: Record<string, string>;
}

/** What a layer's backward works from. */
export interface BackwardArgs {
  /** The values its trainForward saved. */
  saved: Record<string, string>;
  /** dL/dy, in the training layout. */
  dy: string;
  inShape: Shape;
  /** Base name for the emitted nodes. */
  name: string;
  /** Whether dL/dx is wanted (not for the first trainable layer). */
  needDx: boolean;
}

export interface Backward {
  /** Gradient with respect to the layer's input; absent when not asked for. */
  dx?: string;
  /** Gradients of the trainable parameters, by suffix. */
  grads: Record<string, string>;
}

export interface OpKind<A> {
  outShape(a: A, x: Shape): Shape;
  params(a: A, x: Shape): ParamSpec[];
  /** Multiply-accumulates per sample (what the GFLOPs tables count: convs and FCs). */
  macs(a: A, x: Shape): number;
  /** Emit the inference-mode forward of one layer; returns the output value's name. */
  forward(ctx: EmitCtx, a: A, x: string, inShape: Shape, name: string): string;
  /** Emit the training-mode forward (layout of TrainCtx). */
  trainForward(ctx: TrainCtx, a: A, x: string, inShape: Shape, name: string): TrainForward;
  /** Emit the backward: from dL/dy and what trainForward saved, dL/dx (if `needDx`) and the parameter gradients. */
  backward(ctx: TrainCtx, a: A, b: BackwardArgs): Backward;
}

export function checkRank(kind: string, x: Shape, rank: number): void {
  if (x.length !== rank) throw new Error(`${kind} wants a rank-${rank} input per sample, got [${x.join(", ")}]`);
}
