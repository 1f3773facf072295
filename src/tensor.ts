/** Plain host tensors: what crosses the edges (files, CLI, ONNX initializers). */
export type DType = "float32" | "float16" | "float64" | "int64" | "int32" | "int8" | "uint8" | "bool";

export type TypedData = Float32Array | Float64Array | Int32Array | BigInt64Array | Int8Array | Uint8Array | Uint16Array;

export interface Tensor {
  dtype: DType;
  shape: number[];
  /** Row-major (C order). float16 is kept as raw Uint16Array bits; bool as Uint8Array. */
  data: TypedData;
}

/** An ordered name -> tensor map with torchvision's key names (`features.0.weight`). */
export type StateDict = Map<string, Tensor>;

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function float32(shape: number[], data?: Float32Array): Tensor {
  return { dtype: "float32", shape, data: data ?? new Float32Array(numel(shape)) };
}

export function shapeStr(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}
