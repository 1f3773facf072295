import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { writeFileAtomic } from "../src/io/atomic.js";
import type { StateDict, Tensor } from "../src/tensor.js";
import { readSafetensors, readSafetensorsFile, writeSafetensors } from "../src/weights/safetensors.js";
import { assertCleanOutcome, assertVggError, tmpDir } from "./weights-helpers.js";

const dir = tmpDir();

function sample(): StateDict {
  return new Map<string, Tensor>([
    ["features.0.weight", { dtype: "float32", shape: [2, 1, 3, 3], data: Float32Array.from({ length: 18 }, (_, i) => i / 4 - 2) }],
    ["features.0.bias", { dtype: "float32", shape: [2], data: Float32Array.from([0.5, -0.25]) }],
    ["half", { dtype: "float16", shape: [3], data: Uint16Array.from([0x3c00, 0xc000, 0x7c00]) }],
    ["bn.num_batches_tracked", { dtype: "int64", shape: [], data: BigInt64Array.from([123456789012345n]) }],
    ["f64", { dtype: "float64", shape: [2], data: Float64Array.from([Math.PI, -1e300]) }],
    ["i32", { dtype: "int32", shape: [1, 2], data: Int32Array.from([-2147483648, 7]) }],
    ["i8", { dtype: "int8", shape: [3], data: Int8Array.from([-128, 0, 127]) }],
    ["u8", { dtype: "uint8", shape: [3], data: Uint8Array.from([0, 128, 255]) }],
    ["mask", { dtype: "bool", shape: [2], data: Uint8Array.from([1, 0]) }],
    ["empty", { dtype: "float32", shape: [0, 4], data: new Float32Array(0) }],
  ]);
}

/** Writes a safetensors file from a header object (or raw header text) and data bytes, with an optional length lie. */
function rawFile(name: string, header: unknown, data: Uint8Array, headerLen?: bigint): string {
  const text = typeof header === "string" ? header : JSON.stringify(header);
  const h = Buffer.from(text, "utf8");
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(headerLen ?? BigInt(h.length));
  const p = join(dir, name);
  writeFileSync(p, Buffer.concat([len, h, data]));
  return p;
}

test("a header-only read gives the metadata without the tensors, and still checks the header", () => {
  const p = join(dir, "meta-only.safetensors");
  writeSafetensors(p, sample(), { model: '{"arch":"vgg11"}' });
  const r = readSafetensorsFile(p, { tensors: false });
  assert.deepEqual(r.metadata, { model: '{"arch":"vgg11"}' });
  assert.equal(r.tensors.size, 0);
  assert.equal(readSafetensorsFile(p).tensors.size, sample().size);
  const f32 = new Uint8Array(8);
  const gap = rawFile("meta-gap.safetensors", { a: { dtype: "F32", shape: [1], data_offsets: [4, 8] } }, f32);
  assertVggError(() => readSafetensorsFile(gap, { tensors: false }), gap, /belong to no tensor/);
});

test("round trip keeps names, order, dtypes, shapes, exact values and metadata", () => {
  const p = join(dir, "round.safetensors");
  writeSafetensors(p, sample(), { format: "pt", note: "héllo" });
  const { tensors, metadata } = readSafetensorsFile(p);
  assert.deepEqual(metadata, { format: "pt", note: "héllo" });
  assert.deepEqual([...tensors.keys()], [...sample().keys()]);
  for (const [k, want] of sample()) {
    const got = tensors.get(k);
    assert.equal(got?.dtype, want.dtype, k);
    assert.deepEqual(got?.shape, want.shape, k);
    assert.deepEqual(Array.from((got?.data ?? []) as ArrayLike<unknown>), Array.from(want.data as ArrayLike<unknown>), k);
    assert.equal(got?.data.constructor, want.data.constructor, k);
  }
});

test("the written layout follows the format: padded header, aligned data, offsets covering the data exactly", () => {
  const p = join(dir, "layout.safetensors");
  writeSafetensors(p, sample());
  const b = readFileSync(p);
  const n = Number(b.readBigUInt64LE(0));
  assert.equal((8 + n) % 8, 0);
  const text = b.subarray(8, 8 + n).toString("utf8");
  assert.match(text, /^\{.*\} *$/);
  const header = JSON.parse(text);
  assert.equal(header.__metadata__, undefined);
  assert.deepEqual(header.half, { dtype: "F16", shape: [3], data_offsets: header.half.data_offsets });
  const spans = Object.values(header as Record<string, { dtype: string; data_offsets: [number, number] }>).sort(
    (a, b) => a.data_offsets[0] - b.data_offsets[0] || a.data_offsets[1] - b.data_offsets[1],
  );
  let end = 0;
  for (const s of spans) {
    assert.equal(s.data_offsets[0], end);
    const item = { F64: 8, I64: 8, F32: 4, I32: 4, F16: 2, I8: 1, U8: 1, BOOL: 1 }[s.dtype] ?? 0;
    assert.equal(s.data_offsets[0] % item, 0, `${s.dtype} tensor starts aligned`);
    end = s.data_offsets[1];
  }
  assert.equal(8 + n + end, b.length);
  assert.deepEqual(new Set(spans.map((s) => s.dtype)), new Set(["F32", "F16", "I64", "F64", "I32", "I8", "U8", "BOOL"]));
});

test("BF16 and I16 tensors from other tools widen exactly to float32 and int32", () => {
  const data = Buffer.concat([Buffer.from(Uint16Array.from([0x3f80, 0xc0a0]).buffer), Buffer.from(Int16Array.from([-300, 5]).buffer)]);
  const p = rawFile(
    "bf16.safetensors",
    { a: { dtype: "BF16", shape: [2], data_offsets: [0, 4] }, b: { dtype: "I16", shape: [2], data_offsets: [4, 8] } },
    data,
  );
  const sd = readSafetensors(p);
  assert.deepEqual(sd.get("a"), { dtype: "float32", shape: [2], data: Float32Array.from([1, -5]) });
  assert.deepEqual(sd.get("b"), { dtype: "int32", shape: [2], data: Int32Array.from([-300, 5]) });
});

test("bad headers are refused with the problem named", () => {
  const f4 = new Uint8Array(8);
  const ok = { w: { dtype: "F32", shape: [2], data_offsets: [0, 8] } };
  const cases: [string, () => string, RegExp][] = [
    [
      "short",
      () => {
        writeFileSync(join(dir, "short.safetensors"), Buffer.alloc(5));
        return join(dir, "short.safetensors");
      },
      /truncated safetensors file \(5 bytes, no header length\)/,
    ],
    ["empty-header", () => rawFile("nohead.safetensors", "", new Uint8Array(0)), /does not start with '\{'/],
    ["past-eof", () => rawFile("eof.safetensors", ok, f4, 1000n), /header length 1000 is past the end of the file \(\d+ bytes\)/],
    ["huge-len", () => rawFile("huge.safetensors", ok, f4, 2n ** 63n), /header length 9223372036854775808 is past the end/],
    ["json", () => rawFile("json.safetensors", '{"w": {"dtype": "F32",', f4), /not valid JSON/],
    ["array", () => rawFile("array.safetensors", "[1, 2]", f4), /does not start with '\{'/],
    ["unknown-dtype", () => rawFile("dt.safetensors", { w: { ...ok.w, dtype: "F33" } }, f4), /tensor 'w': unknown dtype 'F33'/],
    [
      "unsupported-dtype",
      () => rawFile("u32.safetensors", { w: { ...ok.w, dtype: "U32" } }, f4),
      /tensor 'w': dtype 'U32' is not supported/,
    ],
    ["no-dtype", () => rawFile("nodt.safetensors", { w: { shape: [2], data_offsets: [0, 8] } }, f4), /dtype is missing/],
    ["shape", () => rawFile("shape.safetensors", { w: { ...ok.w, shape: [2, -1] } }, f4), /shape must be a list of non-negative integers/],
    ["shape-float", () => rawFile("shapef.safetensors", { w: { ...ok.w, shape: [2.5] } }, f4), /shape must be/],
    [
      "offsets",
      () => rawFile("off.safetensors", { w: { ...ok.w, data_offsets: [0, 16] } }, f4),
      /data_offsets \[0, 16\] are outside the 8-byte data section/,
    ],
    ["reversed", () => rawFile("rev.safetensors", { w: { ...ok.w, data_offsets: [8, 0] } }, f4), /outside/],
    [
      "size",
      () => rawFile("size.safetensors", { w: { ...ok.w, shape: [3] } }, f4),
      /shape \[3\] of F32 needs 12 bytes but data_offsets span 8/,
    ],
    [
      "overlap",
      () =>
        rawFile(
          "overlap.safetensors",
          { a: { dtype: "F32", shape: [1], data_offsets: [0, 4] }, b: { dtype: "F32", shape: [2], data_offsets: [0, 8] } },
          f4,
        ),
      /tensors 'a' and 'b' overlap/,
    ],
    [
      "hole",
      () => rawFile("hole.safetensors", { a: { dtype: "F32", shape: [1], data_offsets: [4, 8] } }, f4),
      /data bytes 0\.\.4 belong to no tensor/,
    ],
    [
      "trailing",
      () => rawFile("trail.safetensors", { a: { dtype: "F32", shape: [1], data_offsets: [0, 4] } }, f4),
      /data bytes 4\.\.8 belong to no tensor/,
    ],
    ["metadata", () => rawFile("meta.safetensors", { __metadata__: { n: 3 }, ...ok }, f4), /__metadata__ value for 'n' is not a string/],
    ["entry", () => rawFile("entry.safetensors", { w: [1] }, f4), /tensor 'w': header entry is not an object/],
    ["newline-name", () => rawFile("nl.safetensors", { "a\nb": { ...ok.w, dtype: "X" } }, f4), /tensor 'a\\u000ab': unknown dtype 'X'/],
  ];
  for (const [, make, pattern] of cases) {
    const p = make();
    assertVggError(() => readSafetensors(p), p, pattern);
  }
  const missing = join(dir, "missing.safetensors");
  assertVggError(() => readSafetensors(missing), missing, /no such file/);
});

test("every truncation and every single-byte corruption gives success or a clean error (fuzz)", () => {
  const p = join(dir, "fuzz-src.safetensors");
  writeSafetensors(p, sample(), { a: "b" });
  const good = readFileSync(p);
  const q = join(dir, "fuzz.safetensors");
  let errors = 0;
  for (let n = 0; n < good.length; n++) {
    writeFileSync(q, good.subarray(0, n));
    assertVggError(() => readSafetensors(q), q);
  }
  const headerEnd = 8 + Number(good.readBigUInt64LE(0));
  for (let i = 0; i < headerEnd; i++) {
    const b = Buffer.from(good);
    b[i] ^= i % 3 ? 0x04 : 0x80;
    writeFileSync(q, b);
    if (assertCleanOutcome(() => readSafetensors(q), q, `byte ${i}`) === "error") errors++;
  }
  assert.ok(errors > headerEnd * 0.5, `only ${errors} of ${headerEnd} header flips caught`);
});

test("writer refuses inconsistent tensors and bad names without touching an existing file", () => {
  const p = join(dir, "keep.safetensors");
  writeSafetensors(p, sample());
  const before = readFileSync(p);
  const bad: [StateDict, RegExp][] = [
    [
      new Map([["w", { dtype: "float32", shape: [3], data: new Float32Array(2) } as Tensor]]),
      /tensor 'w' has 2 elements but shape \[3\] needs 3/,
    ],
    [
      new Map([["w", { dtype: "float32", shape: [2], data: new Float64Array(2) } as Tensor]]),
      /tensor 'w' is float32 but its data is a Float64Array/,
    ],
    [new Map([["w", { dtype: "complex64", shape: [1], data: new Float32Array(1) } as unknown as Tensor]]), /unknown dtype 'complex64'/],
    [new Map([["__metadata__", sample().get("half") as Tensor]]), /invalid tensor name '__metadata__'/],
    [new Map([["", sample().get("half") as Tensor]]), /invalid tensor name ''/],
  ];
  for (const [sd, pattern] of bad) assertVggError(() => writeSafetensors(p, sd), p, pattern);
  assert.deepEqual(readFileSync(p), before);
  assert.deepEqual(
    readdirSync(dir).filter((n) => n.endsWith(".tmp")),
    [],
  );
});

test("writeFileAtomic replaces whole files, leaves no temp files, and reports unwritable paths", () => {
  const p = join(dir, "atomic.bin");
  writeFileAtomic(p, [Uint8Array.from([1, 2]), new Uint8Array(0), Uint8Array.from([3])]);
  assert.deepEqual([...readFileSync(p)], [1, 2, 3]);
  writeFileAtomic(p, [Uint8Array.from([9])]);
  assert.deepEqual([...readFileSync(p)], [9]);
  assert.deepEqual(
    readdirSync(dir).filter((n) => n.includes("atomic.bin") && n !== "atomic.bin"),
    [],
  );
  const nowhere = join(dir, "no", "such", "dir", "x.safetensors");
  assertVggError(() => writeSafetensors(nowhere, sample()), nowhere, /no such file or directory/);
  assert.equal(existsSync(nowhere), false);
  // Renaming over a non-empty directory fails; the temp file must still be cleaned up.
  assertVggError(() => writeFileAtomic(dir, [new Uint8Array(1)]), dir, /is a directory|cannot write/);
  assert.deepEqual(
    readdirSync(join(dir, "..")).filter((n) => n.startsWith(".vgg-weights-") && n.endsWith(".tmp")),
    [],
  );
});
