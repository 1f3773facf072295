import assert from "node:assert/strict";
import { test } from "node:test";
import { readPth } from "../src/weights/pth.js";
import {
  assertCleanOutcome,
  assertVggError,
  buildZip,
  type FakeStorage,
  type FakeTensor,
  f32bytes,
  legacyPth,
  PickleBuilder,
  statePickle,
  tmpDir,
  writeBytes,
  zipPth,
} from "./weights-helpers.js";

const dir = tmpDir();

// One shared storage of 0..23 and the tensors torchvision-style files contain, including views into it.
const base: FakeStorage = { key: "0", type: "FloatStorage", data: f32bytes(Array.from({ length: 24 }, (_, i) => i)) };
const long: FakeStorage = { key: "1", type: "LongStorage", data: new Uint8Array(BigInt64Array.from([37n, -(2n ** 40n)]).buffer) };
const half: FakeStorage = { key: "2", type: "HalfStorage", data: new Uint8Array(Uint16Array.from([0x3c00, 0xc000, 0x7bff]).buffer) };
const bf16: FakeStorage = { key: "3", type: "BFloat16Storage", data: new Uint8Array(Uint16Array.from([0x3f80, 0xc0a0]).buffer) };
const bools: FakeStorage = { key: "4", type: "BoolStorage", data: Uint8Array.from([1, 0, 1]) };
const shorts: FakeStorage = { key: "5", type: "ShortStorage", data: new Uint8Array(Int16Array.from([-300, 7]).buffer) };

const TENSORS: FakeTensor[] = [
  { name: "features.0.weight", storage: base, size: [2, 3, 2, 2] },
  // base viewed as [4, 6], rows 1.., every other column, transposed: strides (1, 6) from offset 6
  { name: "view.t", storage: base, offset: 6, size: [3, 3], stride: [2, 6] },
  { name: "view.row", storage: base, offset: 18, size: [6] },
  { name: "view.col", storage: base, offset: 1, size: [4], stride: [6] },
  { name: "bn.num_batches_tracked", storage: long, size: [] },
  { name: "big", storage: long, offset: 1, size: [1] },
  { name: "half", storage: half, size: [3] },
  { name: "bf16", storage: bf16, size: [2] },
  { name: "bools", storage: bools, size: [3] },
  { name: "shorts", storage: shorts, size: [2] },
  { name: "empty", storage: base, offset: 24, size: [0, 5] },
  { name: "expanded", storage: base, offset: 2, size: [2, 3], stride: [0, 1] },
];

function checkAll(path: string): void {
  const sd = readPth(path);
  const get = (k: string) => {
    const t = sd.get(k);
    assert.ok(t, `${k} missing`);
    return t;
  };
  assert.deepEqual(
    [...sd.keys()],
    TENSORS.map((t) => t.name),
  );
  const w = get("features.0.weight");
  assert.deepEqual(w.shape, [2, 3, 2, 2]);
  assert.equal(w.dtype, "float32");
  assert.deepEqual(
    Array.from(w.data as Float32Array),
    Array.from({ length: 24 }, (_, i) => i),
  );
  assert.deepEqual(Array.from(get("view.t").data as Float32Array), [6, 12, 18, 8, 14, 20, 10, 16, 22]);
  assert.deepEqual(Array.from(get("view.row").data as Float32Array), [18, 19, 20, 21, 22, 23]);
  assert.deepEqual(Array.from(get("view.col").data as Float32Array), [1, 7, 13, 19]);
  const nbt = get("bn.num_batches_tracked");
  assert.deepEqual({ dtype: nbt.dtype, shape: nbt.shape }, { dtype: "int64", shape: [] });
  assert.deepEqual(Array.from(nbt.data as BigInt64Array), [37n]);
  assert.deepEqual(Array.from(get("big").data as BigInt64Array), [-(2n ** 40n)]);
  assert.equal(get("half").dtype, "float16");
  assert.deepEqual(Array.from(get("half").data as Uint16Array), [0x3c00, 0xc000, 0x7bff]);
  assert.equal(get("bf16").dtype, "float32");
  assert.deepEqual(Array.from(get("bf16").data as Float32Array), [1, -5]);
  assert.equal(get("bools").dtype, "bool");
  assert.deepEqual(Array.from(get("bools").data as Uint8Array), [1, 0, 1]);
  assert.equal(get("shorts").dtype, "int32");
  assert.deepEqual(Array.from(get("shorts").data as Int32Array), [-300, 7]);
  assert.deepEqual(get("empty").shape, [0, 5]);
  assert.equal(get("empty").data.length, 0);
  assert.deepEqual(Array.from(get("expanded").data as Float32Array), [2, 3, 4, 2, 3, 4]);
  // Materialised views are independent copies: changing one must not change the tensor that owns the storage.
  (get("view.row").data as Float32Array)[0] = -1;
  assert.equal((w.data as Float32Array)[18], 18);
}

test("zip .pth: shared storages, strided/offset/expanded views and every dtype load as torch would", () => {
  checkAll(writeBytes(dir, "plain.pth", zipPth(TENSORS)));
});

test("zip .pth with ZIP64 records and extra fields", () => {
  checkAll(writeBytes(dir, "zip64.pth", zipPth(TENSORS, { zip64: true, top: "zip64" })));
});

test("zip .pth with deflated entries", () => {
  checkAll(writeBytes(dir, "deflate.pth", zipPth(TENSORS, { deflate: true })));
});

test("legacy (pre-1.6) .pth", () => {
  checkAll(writeBytes(dir, "legacy.pth", legacyPth(TENSORS)));
});

test("legacy files whose pickle is larger than the first read still load (the prefix grows)", () => {
  const s: FakeStorage = { key: "140234", type: "FloatStorage", data: f32bytes(Array.from({ length: 3000 }, (_, i) => i)) };
  const many: FakeTensor[] = Array.from({ length: 3000 }, (_, i) => ({
    name: `layer.${i}.a_rather_long_parameter_name`,
    storage: s,
    offset: i,
    size: [1],
  }));
  const bytes = legacyPth(many);
  assert.ok(bytes.length > 4 * 65536 - 12000, `pickle of ${bytes.length} bytes spans several reads`);
  const sd = readPth(writeBytes(dir, "big-pickle.pth", bytes));
  assert.equal(sd.size, 3000);
  assert.deepEqual(Array.from(sd.get("layer.2999.a_rather_long_parameter_name")?.data as Float32Array), [2999]);
});

test("a whole contiguous storage is handed over without a copy, once", () => {
  const s: FakeStorage = { key: "w", type: "FloatStorage", data: f32bytes([1, 2, 3, 4]) };
  const p = writeBytes(
    dir,
    "tied.pth",
    zipPth([
      { name: "a", storage: s, size: [2, 2] },
      { name: "b", storage: s, size: [4] },
    ]),
  );
  const sd = readPth(p);
  const a = sd.get("a")?.data as Float32Array;
  const b = sd.get("b")?.data as Float32Array;
  assert.equal(a.byteLength, a.buffer.byteLength, "first owner views the storage buffer itself");
  assert.notEqual(a.buffer, b.buffer, "a second tensor on the same storage gets its own copy");
  assert.deepEqual(Array.from(b), [1, 2, 3, 4]);
});

test("training checkpoints: the state dict under 'state_dict' or 'model' is chosen, the rest is ignored", () => {
  const w: FakeStorage = { key: "0", type: "FloatStorage", data: f32bytes([5, 6]) };
  for (const key of ["state_dict", "model"]) {
    const pickle = statePickle([{ name: "fc.bias", storage: w, size: [2] }], false, (p, body) => {
      p.raw(0x7d).mark().str("epoch").int(90).str("arch").str("vgg16").str("best_acc1").raw(0x47, 0x40, 0x52, 0, 0, 0, 0, 0, 0);
      p.str(key);
      body();
      p.raw(0x75);
    });
    const path = writeBytes(dir, `ckpt-${key}.pth`, zipPth([{ name: "fc.bias", storage: w, size: [2] }], { pickle }));
    const sd = readPth(path);
    assert.deepEqual([...sd.keys()], ["fc.bias"]);
    assert.deepEqual(Array.from(sd.get("fc.bias")?.data as Float32Array), [5, 6]);
  }
});

test("a tensor-free top level, non-tensor entries and non-string keys are refused with the offending key", () => {
  const list = new PickleBuilder().proto(2).raw(0x5d).stop().bytes();
  const p1 = writeBytes(dir, "list.pth", zipPth([], { pickle: list }));
  assertVggError(() => readPth(p1), p1, /pickled object is a list, not a state dict/);
  const w: FakeStorage = { key: "0", type: "FloatStorage", data: f32bytes([1]) };
  const mixed = statePickle([{ name: "a", storage: w, size: [1] }], false, (p, body) => {
    body();
    p.str("epoch").int(3).raw(0x73);
  });
  const p2 = writeBytes(dir, "mixed.pth", zipPth([{ name: "a", storage: w, size: [1] }], { pickle: mixed }));
  assertVggError(() => readPth(p2), p2, /entry 'epoch' is a int, not a tensor.*no 'state_dict' or 'model' entry/);
  const intKey = new PickleBuilder().proto(2).raw(0x7d).str("state_dict").raw(0x7d).int(3).int(4).raw(0x73, 0x73).stop().bytes();
  const p3 = writeBytes(dir, "intkey.pth", zipPth([], { pickle: intKey }));
  assertVggError(() => readPth(p3), p3, /state dict key 3 in 'state_dict' is a int, not a string/);
});

test("a pickle naming os.system or a model class inside a .pth is refused", () => {
  const evil = new PickleBuilder().proto(2).global("os", "system").str("touch /tmp/vgg-pwned-pth").raw(0x85).reduce().stop().bytes();
  const p = writeBytes(dir, "evil.pth", zipPth([], { pickle: evil }));
  assertVggError(() => readPth(p), p, /forbidden global 'os\.system' in pickle/);
  const model = new PickleBuilder().proto(2).global("torchvision.models.vgg", "VGG").emptyTuple().raw(0x81).stop().bytes();
  const p2 = writeBytes(dir, "model.pth", legacyPth([], { pickle: model }));
  assertVggError(() => readPth(p2), p2, /forbidden global 'torchvision\.models\.vgg\.VGG'/);
});

test("tensors reaching past their storage, or storages of the wrong size, are refused", () => {
  const s: FakeStorage = { key: "0", type: "FloatStorage", data: f32bytes([1, 2, 3, 4]) };
  const cases: [string, FakeTensor[], RegExp][] = [
    ["past-end", [{ name: "w", storage: s, size: [5] }], /tensor 'w' \[5\] .* reaches element 4 of a storage of 4/],
    ["offset", [{ name: "w", storage: s, offset: 3, size: [2] }], /reaches element 4 of a storage of 4/],
    ["stride", [{ name: "w", storage: s, size: [2, 2], stride: [3, 1] }], /reaches element 4/],
    ["expand", [{ name: "w", storage: s, size: [65536, 1024], stride: [0, 0] }], /expands a storage of 4 elements to 67108864/],
    ["huge", [{ name: "w", storage: s, size: [65536, 65536], stride: [0, 0] }], /has 4294967296 elements, more than can be loaded/],
    [
      "numel-lie",
      [{ name: "w", storage: { ...s, numel: 1000 }, size: [4] }],
      /storage '0' has 16 bytes but 1000 float32 elements need 4000/,
    ],
  ];
  for (const [name, tensors, pattern] of cases) {
    const p = writeBytes(dir, `bad-${name}.pth`, zipPth(tensors));
    assertVggError(() => readPth(p), p, pattern);
  }
  const p = writeBytes(dir, "legacy-count.pth", legacyPth([{ name: "w", storage: s, size: [4] }], { counts: { "0": 3n } }));
  assertVggError(() => readPth(p), p, /storage '0' holds 3 elements but the pickle says 4/);
  const big = writeBytes(dir, "legacy-huge.pth", legacyPth([{ name: "w", storage: s, size: [4] }], { counts: { "0": 2n ** 62n } }));
  assertVggError(() => readPth(big), big, /declares 4611686018427387904 elements but only 16 bytes remain/);
});

test("a missing storage entry, big-endian files, TorchScript archives and odd compression are explained", () => {
  const s: FakeStorage = { key: "0", type: "FloatStorage", data: f32bytes([1]) };
  const pickle = statePickle([{ name: "w", storage: s, size: [1] }], false);
  const noData = writeBytes(dir, "nodata.pth", buildZip([{ name: "a/data.pkl", data: pickle }]));
  assertVggError(() => readPth(noData), noData, /storage '0' is missing from the archive \(no entry 'a\/data\/0'\)/);
  const be = writeBytes(dir, "big-endian.pth", zipPth([{ name: "w", storage: s, size: [1] }], { byteorder: "big" }));
  assertVggError(() => readPth(be), be, /byte order 'big' is not supported/);
  const ts = writeBytes(
    dir,
    "script.pt",
    buildZip([
      { name: "m/data.pkl", data: pickle },
      { name: "m/constants.pkl", data: pickle },
    ]),
  );
  assertVggError(() => readPth(ts), ts, /TorchScript archive/);
  const bz = writeBytes(dir, "bzip2.pth", zipPth([{ name: "w", storage: s, size: [1] }], { method: 12 }));
  assertVggError(() => readPth(bz), bz, /uses compression method 12; only stored \(0\) and deflate \(8\)/);
  const none = writeBytes(dir, "nopkl.pth", buildZip([{ name: "a/other.txt", data: pickle }]));
  assertVggError(() => readPth(none), none, /not a PyTorch checkpoint \(no data\.pkl\)/);
  const text = writeBytes(dir, "text.pth", new TextEncoder().encode("hello, I am not a checkpoint\n"));
  assertVggError(() => readPth(text), text, /not a PyTorch checkpoint/);
  const missing = `${dir}/does-not-exist.pth`;
  assertVggError(() => readPth(missing), missing, /no such file/);
  assertVggError(() => readPth(dir), dir, /is a directory/);
});

test("a flipped bit in a stored tensor is caught by the zip CRC", () => {
  const bytes = zipPth(TENSORS);
  const at = Buffer.from(bytes).indexOf(Buffer.from(f32bytes([5, 6, 7])));
  assert.ok(at > 0);
  bytes[at + 1] ^= 0x10;
  const p = writeBytes(dir, "flipped.pth", bytes);
  assertVggError(() => readPth(p), p, /CRC mismatch in 'archive\/data\/0'/);
});

test("zip structures with lying sizes are refused before allocating", () => {
  const good = zipPth(TENSORS);
  const eocd = good.length - 22;
  const lie = (name: string, patch: (v: DataView) => void, pattern: RegExp) => {
    const b = good.slice();
    patch(new DataView(b.buffer));
    const p = writeBytes(dir, name, b);
    assertVggError(() => readPth(p), p, pattern);
  };
  lie("count.pth", (v) => v.setUint16(eocd + 10, 0xfffe, true), /65534 entries cannot fit/);
  lie("cdsize.pth", (v) => v.setUint32(eocd + 12, 0x7fffffff, true), /central directory is past its end record/);
  lie("disk.pth", (v) => v.setUint16(eocd + 4, 1, true), /multi-disk/);
  const z64 = zipPth(TENSORS, { zip64: true });
  const b = z64.slice();
  const v = new DataView(b.buffer);
  v.setBigUint64(b.length - 22 - 20 + 8, 2n ** 60n, true); // locator -> ZIP64 end record offset
  const p = writeBytes(dir, "z64-offset.pth", b);
  assertVggError(() => readPth(p), p, /ZIP64 end record offset \(1152921504606846976\) is past the end/);
});

test("every truncation of zip and legacy files gives a one-line error naming the file", () => {
  for (const [name, bytes] of [
    ["trunc-zip.pth", zipPth(TENSORS)],
    ["trunc-legacy.pth", legacyPth(TENSORS)],
  ] as const) {
    let errors = 0;
    for (let n = 0; n < bytes.length; n += 7) {
      const p = writeBytes(dir, name, bytes.subarray(0, n));
      assertVggError(() => readPth(p), p);
      errors++;
    }
    assert.ok(errors > 50);
  }
});

test("single-byte corruption anywhere never crashes the reader (fuzz)", () => {
  for (const [name, bytes] of [
    ["fuzz-zip.pth", zipPth(TENSORS)],
    ["fuzz-zip64.pth", zipPth(TENSORS, { zip64: true })],
    ["fuzz-legacy.pth", legacyPth(TENSORS)],
  ] as const) {
    let caught = 0;
    for (let i = 0; i < bytes.length; i++) {
      const b = bytes.slice();
      b[i] ^= i % 2 ? 0xff : 0x01;
      const p = writeBytes(dir, name, b);
      if (assertCleanOutcome(() => readPth(p), p, `${name} byte ${i}`) === "error") caught++;
    }
    // Zip CRCs cover the pickle and the data, so nearly every flip is caught there; legacy files have no checksum.
    assert.ok(caught > bytes.length * (name.includes("legacy") ? 0.2 : 0.8), `${name}: only ${caught} of ${bytes.length} flips caught`);
  }
});
