import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { readNpy, writeNpy } from "../src/io/npy.js";
import type { Tensor } from "../src/tensor.js";
import { assertCleanOutcome, assertVggError, tmpDir } from "./weights-helpers.js";

const dir = tmpDir();

const SAMPLES: Record<string, Tensor> = {
  f32: { dtype: "float32", shape: [2, 3, 4], data: Float32Array.from({ length: 24 }, (_, i) => (i - 11.5) / 3) },
  f64: { dtype: "float64", shape: [3], data: Float64Array.from([Math.E, -0, 1e-310]) },
  f16: { dtype: "float16", shape: [2, 1], data: Uint16Array.from([0x3555, 0xfc00]) },
  i64: { dtype: "int64", shape: [2], data: BigInt64Array.from([-(2n ** 63n), 2n ** 63n - 1n]) },
  i32: { dtype: "int32", shape: [1, 1, 3], data: Int32Array.from([-1, 0, 1]) },
  i8: { dtype: "int8", shape: [2], data: Int8Array.from([-128, 127]) },
  u8: { dtype: "uint8", shape: [2, 2], data: Uint8Array.from([0, 1, 254, 255]) },
  bool: { dtype: "bool", shape: [3], data: Uint8Array.from([1, 0, 1]) },
  scalar: { dtype: "float32", shape: [], data: Float32Array.from([42]) },
  empty: { dtype: "int64", shape: [0, 7], data: new BigInt64Array(0) },
  // A header longer than 64 KiB forces format version 2.0.
  manyDims: { dtype: "uint8", shape: Array.from({ length: 30000 }, () => 1), data: Uint8Array.from([7]) },
};

/** Writes `header` (a dict literal) as a .npy file with the given version and data bytes, padded like numpy. */
function rawNpy(name: string, header: string, data: Uint8Array, version = 1, padTo = 64): string {
  const pre = version === 1 ? 10 : 12;
  const total = Math.ceil((pre + header.length + 1) / padTo) * padTo;
  const text = `${header}${" ".repeat(total - pre - header.length - 1)}\n`;
  const head = Buffer.alloc(pre);
  head.write("\x93NUMPY", 0, "latin1");
  head[6] = version;
  if (version === 1) head.writeUInt16LE(text.length, 8);
  else head.writeUInt32LE(Buffer.byteLength(text), 8);
  const p = join(dir, name);
  writeFileSync(p, Buffer.concat([head, Buffer.from(text, version === 3 ? "utf8" : "latin1"), data]));
  return p;
}

for (const [name, t] of Object.entries(SAMPLES)) {
  test(`round trip ${name}: dtype, shape and bytes survive, header is 64-byte aligned`, () => {
    const p = join(dir, `${name}.npy`);
    writeNpy(p, t);
    const raw = readFileSync(p);
    const major = raw[6];
    const headerLen = major === 1 ? raw.readUInt16LE(8) : raw.readUInt32LE(8);
    const dataStart = (major === 1 ? 10 : 12) + headerLen;
    assert.equal(dataStart % 64, 0);
    assert.equal(raw[dataStart - 1], 0x0a);
    assert.equal(major, name === "manyDims" ? 2 : 1);
    const got = readNpy(p);
    assert.equal(got.dtype, t.dtype);
    assert.deepEqual(got.shape, t.shape);
    assert.equal(got.data.constructor, t.data.constructor);
    assert.deepEqual(
      Buffer.from(got.data.buffer, got.data.byteOffset, got.data.byteLength),
      Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength),
    );
  });
}

test("headers numpy and Python 2 wrote: double quotes, L suffixes, version 3 UTF-8, Fortran order of a vector", () => {
  const f = new Uint8Array(Float32Array.from([1, 2, 3]).buffer);
  assert.deepEqual(readNpy(rawNpy("dq.npy", `{"descr": "<f4", "fortran_order": False, "shape": (3,)}`, f)).shape, [3]);
  assert.deepEqual(readNpy(rawNpy("py2.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (1L, 3L), }", f, 1, 16)).shape, [1, 3]);
  assert.deepEqual(readNpy(rawNpy("v3.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", f, 3)).shape, [3]);
  const t = readNpy(rawNpy("fvec.npy", "{'descr': '<f4', 'fortran_order': True, 'shape': (3, 1), }", f));
  assert.deepEqual(Array.from(t.data as Float32Array), [1, 2, 3]);
});

test("bad headers and data sizes are refused with the problem named", () => {
  const f8 = new Uint8Array(8);
  const hdr = (descr: string, shape = "(2,)", fortran = "False") =>
    `{'descr': '${descr}', 'fortran_order': ${fortran}, 'shape': ${shape}, }`;
  const cases: [string, string, RegExp][] = [
    ["f3.npy", rawNpy("f3.npy", hdr("<f3"), f8), /unsupported \.npy dtype '<f3'/],
    ["be.npy", rawNpy("be.npy", hdr(">f4"), f8), /big-endian dtype '>f4' is not supported/],
    ["obj.npy", rawNpy("obj.npy", hdr("|O"), f8), /object arrays \(dtype '\|O'\) are not supported/],
    ["str.npy", rawNpy("str.npy", hdr("<U5"), f8), /unsupported \.npy dtype '<U5'/],
    ["fortran.npy", rawNpy("fortran.npy", hdr("|u1", "(2, 4)", "True"), f8), /Fortran-order arrays are not supported/],
    [
      "struct.npy",
      rawNpy("struct.npy", "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", f8),
      /structured dtypes are not supported/,
    ],
    ["extra.npy", rawNpy("extra.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", f8), /unexpected key 'x'/],
    ["dup.npy", rawNpy("dup.npy", "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}", f8), /duplicate key 'descr'/],
    ["nokey.npy", rawNpy("nokey.npy", "{'descr': '<f4', 'shape': (2,)}", f8), /'fortran_order' is missing/],
    ["neg.npy", rawNpy("neg.npy", hdr("<f4", "(-2,)"), f8), /unexpected token/],
    ["call.npy", rawNpy("call.npy", "{'descr': __import__('os'), 'fortran_order': False, 'shape': (2,)}", f8), /unexpected token/],
    ["nested.npy", rawNpy("nested.npy", hdr("<f4", "((2,),)"), f8), /nested tuples/],
    ["trail.npy", rawNpy("trail.npy", `${hdr("<f4")} x`, f8), /trailing characters/],
    ["unterminated.npy", rawNpy("unterminated.npy", "{'descr': '<f4", f8), /unterminated string/],
    [
      "short.npy",
      rawNpy("short.npy", hdr("<f4", "(3,)"), f8),
      /shape \[3\] of float32 needs 12 data bytes but the file has 8 \(truncated\?\)/,
    ],
    ["long.npy", rawNpy("long.npy", hdr("<f4", "(1,)"), f8), /needs 4 data bytes but the file has 8/],
    [
      "huge.npy",
      rawNpy("huge.npy", hdr("<f8", "(4294967296, 4294967296)"), f8),
      /needs 147573952589676410000 data bytes but the file has 8/,
    ],
  ];
  for (const [, p, pattern] of cases) assertVggError(() => readNpy(p), p, pattern);
  const magic = join(dir, "magic.npy");
  writeFileSync(magic, "\x93NUMPX garbage garbage");
  assertVggError(() => readNpy(magic), magic, /not a \.npy file \(bad magic\)/);
  const v9 = rawNpy("v9.npy", hdr("<f4"), f8);
  const b = readFileSync(v9);
  b[6] = 9;
  writeFileSync(v9, b);
  assertVggError(() => readNpy(v9), v9, /unsupported \.npy format version 9\.0/);
  const pastEof = join(dir, "past.npy");
  writeFileSync(pastEof, Buffer.concat([Buffer.from("\x93NUMPY\x01\x00", "latin1"), Buffer.from([0xff, 0xff]), Buffer.from("{}")]));
  assertVggError(() => readNpy(pastEof), pastEof, /header of 65535 bytes runs past the end \(12 bytes\)/);
});

test("every truncation and every single-byte corruption gives success or a clean error (fuzz)", () => {
  const p = join(dir, "fuzz-src.npy");
  writeNpy(p, SAMPLES.f32);
  const good = readFileSync(p);
  const q = join(dir, "fuzz.npy");
  for (let n = 0; n < good.length; n++) {
    writeFileSync(q, good.subarray(0, n));
    assertVggError(() => readNpy(q), q);
  }
  let errors = 0;
  for (let i = 0; i < 128; i++) {
    const b = Buffer.from(good);
    b[i] ^= i % 2 ? 0x01 : 0x40;
    writeFileSync(q, b);
    if (assertCleanOutcome(() => readNpy(q), q, `byte ${i}`) === "error") errors++;
  }
  assert.ok(errors > 64, `only ${errors} of 128 header flips caught`);
});

test("writeNpy refuses a tensor whose data does not match its shape or dtype", () => {
  const p = join(dir, "bad-write.npy");
  assertVggError(
    () => writeNpy(p, { dtype: "float32", shape: [2, 2], data: new Float32Array(3) }),
    p,
    /has 3 elements but shape \[2, 2\] needs 4/,
  );
  assertVggError(
    () => writeNpy(p, { dtype: "int64", shape: [1], data: new Int32Array(1) }),
    p,
    /is int64 but its data is a Int32Array, not a BigInt64Array/,
  );
});

const numpy = spawnSync("/usr/bin/python3", ["-c", "import numpy"]).status === 0;

test("numpy reads what writeNpy writes, value for value", { skip: numpy ? false : "no numpy in /usr/bin/python3" }, () => {
  const script = [
    "import numpy as np, sys, json",
    "out = {}",
    "for p in sys.argv[1:]:",
    "    a = np.load(p)",
    "    out[p] = [a.dtype.str, list(a.shape), a.reshape(-1).view(np.uint8).tolist()]",
    "print(json.dumps(out))",
  ].join("\n");
  const names = Object.keys(SAMPLES).filter((n) => n !== "manyDims");
  const paths = names.map((n) => {
    const p = join(dir, `np-${n}.npy`);
    writeNpy(p, SAMPLES[n]);
    return p;
  });
  const r = spawnSync("/usr/bin/python3", ["-c", script, ...paths], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  const got = JSON.parse(r.stdout) as Record<string, [string, number[], number[]]>;
  const descr: Record<string, string> = {
    float32: "<f4",
    float64: "<f8",
    float16: "<f2",
    int64: "<i8",
    int32: "<i4",
    int8: "|i1",
    uint8: "|u1",
    bool: "|b1",
  };
  names.forEach((n, i) => {
    const t = SAMPLES[n];
    const [dt, shape, bytes] = got[paths[i]];
    assert.equal(dt, descr[t.dtype], n);
    assert.deepEqual(shape, t.shape, n);
    assert.deepEqual(bytes, [...new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength)], n);
  });
});
