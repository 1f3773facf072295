/** Raw bytes <-> Tensor data, shared by the .pth, safetensors and .npy readers and writers. */
import { VggError } from "../errors.js";
import { type DType, numel, type Tensor, type TypedData } from "../tensor.js";

// Every format read here is little-endian and typed arrays use the host's order; refusing to run elsewhere is
// better than silently byte-swapped weights.
if (new Uint8Array(Uint16Array.of(1).buffer)[0] !== 1) throw new Error("vgg weights I/O supports little-endian hosts only");

export const ITEMSIZE: Record<DType, number> = {
  float32: 4,
  float16: 2,
  float64: 8,
  int64: 8,
  int32: 4,
  int8: 1,
  uint8: 1,
  bool: 1,
};

/**
 * Typed-array view of little-endian `bytes` as `dtype`; zero-copy when `bytes` is aligned for the element size,
 * otherwise an aligned copy. `bytes.byteLength` must be a multiple of the item size.
 */
export function typedFromBytes(dtype: DType, bytes: Uint8Array): TypedData {
  const size = ITEMSIZE[dtype];
  const b = bytes.byteOffset % size === 0 ? bytes : bytes.slice();
  const n = b.byteLength / size;
  switch (dtype) {
    case "float32":
      return new Float32Array(b.buffer, b.byteOffset, n);
    case "float64":
      return new Float64Array(b.buffer, b.byteOffset, n);
    case "float16":
      return new Uint16Array(b.buffer, b.byteOffset, n);
    case "int64":
      return new BigInt64Array(b.buffer, b.byteOffset, n);
    case "int32":
      return new Int32Array(b.buffer, b.byteOffset, n);
    case "int8":
      return new Int8Array(b.buffer, b.byteOffset, n);
    case "uint8":
    case "bool":
      return new Uint8Array(b.buffer, b.byteOffset, n);
  }
}

/** An empty typed array of `dtype` with `n` elements. */
export function allocTyped(dtype: DType, n: number): TypedData {
  switch (dtype) {
    case "float32":
      return new Float32Array(n);
    case "float64":
      return new Float64Array(n);
    case "float16":
      return new Uint16Array(n);
    case "int64":
      return new BigInt64Array(n);
    case "int32":
      return new Int32Array(n);
    case "int8":
      return new Int8Array(n);
    case "uint8":
    case "bool":
      return new Uint8Array(n);
  }
}

const ARRAY_TYPE: Record<DType, string> = {
  float32: "Float32Array",
  float64: "Float64Array",
  float16: "Uint16Array",
  int64: "BigInt64Array",
  int32: "Int32Array",
  int8: "Int8Array",
  uint8: "Uint8Array",
  bool: "Uint8Array",
};

/**
 * Checks that a tensor handed to a writer is self-consistent (dtype known, typed array matching it, element
 * count matching the shape), so that a bad tensor is reported instead of writing a file no reader accepts.
 */
export function checkTensor(t: Tensor, name: string, file: string): void {
  if (!Object.hasOwn(ITEMSIZE, t.dtype)) throw new VggError(`tensor '${name}' has unknown dtype '${String(t.dtype)}'`, file);
  if (!Array.isArray(t.shape) || t.shape.some((d) => !Number.isSafeInteger(d) || d < 0)) {
    throw new VggError(`tensor '${name}' has an invalid shape`, file);
  }
  const want = ARRAY_TYPE[t.dtype];
  if (t.data?.constructor?.name !== want) {
    throw new VggError(
      `tensor '${name}' is ${t.dtype} but its data is a ${t.data?.constructor?.name ?? typeof t.data}, not a ${want}`,
      file,
    );
  }
  if (t.data.length !== numel(t.shape)) {
    throw new VggError(`tensor '${name}' has ${t.data.length} elements but shape [${t.shape.join(", ")}] needs ${numel(t.shape)}`, file);
  }
}

/** The bytes of a tensor's data, without copying. */
export function tensorBytes(t: Tensor): Uint8Array {
  return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}
