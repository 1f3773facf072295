/**
 * Allocation tracking for the fuzz worker: the global ArrayBuffer, SharedArrayBuffer and typed-array constructors
 * are replaced by Proxies (a construct trap; `instanceof` and statics keep working, and `Float32Array.from` goes
 * through the trap too) and Buffer.alloc/allocUnsafe/allocUnsafeSlow are wrapped (Node's own zlib and
 * Buffer.concat allocate through them). While a parse is being tracked, the largest single request is recorded
 * before it is made, and a request above the bound is refused with a RangeError instead of being allocated, so a
 * lying header cannot take the machine's memory even when the parser would have let it through. Copies made by
 * `.slice()` and buffers made by native code (sharp's output, ONNX Runtime) are not seen; they are bounded by
 * what already exists, and the worker's peak RSS is reported for the rest.
 */

export interface AllocRecord {
  /** Largest single allocation requested during the tracked parse, in bytes. */
  max: number;
  /** The largest request over the bound and where it came from (a short stack), if there was one. */
  oversize?: string;
}

/** Allocations made under a given stack frame that may exceed the bound, up to their own limit. */
export interface Allowance {
  frame: string;
  bytes: number;
}

let active = false;
let bound = Number.POSITIVE_INFINITY;
let allowance: Allowance | undefined;
let rec: AllocRecord = { max: 0 };

function stack(): string {
  const lines = (new Error().stack ?? "").split("\n").slice(1);
  return lines
    .filter((l) => !l.includes("/fuzz/alloc."))
    .slice(0, 6)
    .map((l) => l.trim().replace(/^at /, ""))
    .join(" <- ");
}

function note(bytes: number, what: string): void {
  if (!active || !(bytes > rec.max)) return;
  rec.max = bytes;
  if (bytes > bound) {
    const where = stack();
    if (allowance && bytes <= allowance.bytes && where.includes(allowance.frame)) return;
    rec.oversize = `${what} of ${bytes} bytes at ${where}`;
    throw new RangeError(`fuzz harness: ${what} of ${bytes} bytes refused (bound ${bound})`);
  }
}

function typedBytes(args: unknown[], bpe: number): number {
  const a = args[0];
  if (typeof a === "number") return a * bpe;
  if (a instanceof ArrayBuffer || (typeof SharedArrayBuffer !== "undefined" && a instanceof SharedArrayBuffer)) return 0;
  if (a && typeof a === "object" && "length" in a && typeof (a as { length: unknown }).length === "number") {
    return (a as { length: number }).length * bpe;
  }
  return 0;
}

const TYPED = [
  "Int8Array",
  "Uint8Array",
  "Uint8ClampedArray",
  "Int16Array",
  "Uint16Array",
  "Int32Array",
  "Uint32Array",
  "Float32Array",
  "Float64Array",
  "BigInt64Array",
  "BigUint64Array",
] as const;

let installed = false;

/** Replaces the global constructors (once per process). */
export function installAllocTracker(): void {
  if (installed) return;
  installed = true;
  const g = globalThis as unknown as Record<string, unknown>;
  for (const name of TYPED) {
    const Ctor = g[name] as { BYTES_PER_ELEMENT: number } & (new (...args: unknown[]) => object);
    g[name] = new Proxy(Ctor, {
      construct(target, args, newTarget) {
        note(typedBytes(args, Ctor.BYTES_PER_ELEMENT), `new ${name}`);
        return Reflect.construct(target, args, newTarget === g[name] ? target : newTarget);
      },
    });
  }
  for (const name of ["ArrayBuffer", "SharedArrayBuffer"]) {
    const Ctor = g[name] as new (...args: unknown[]) => object;
    if (!Ctor) continue;
    g[name] = new Proxy(Ctor, {
      construct(target, args, newTarget) {
        const n = Number(args[0]) || 0;
        const opt = args[1] as { maxByteLength?: number } | undefined;
        note(Math.max(n, Number(opt?.maxByteLength) || 0), `new ${name}`);
        return Reflect.construct(target, args, newTarget === g[name] ? target : newTarget);
      },
    });
  }
  const B = Buffer as unknown as Record<string, (size: number, ...rest: unknown[]) => Buffer>;
  for (const name of ["alloc", "allocUnsafe", "allocUnsafeSlow"]) {
    const orig = B[name];
    B[name] = function (this: unknown, size: number, ...rest: unknown[]) {
      note(Number(size), `Buffer.${name}`);
      return orig.call(this, size, ...rest);
    };
  }
}

/** Starts tracking one parse with this bound (bytes) and, optionally, an allowance above it. */
export function trackStart(limit: number, allow?: Allowance): void {
  rec = { max: 0 };
  bound = limit;
  allowance = allow;
  active = true;
}

export function trackStop(): AllocRecord {
  active = false;
  return rec;
}
