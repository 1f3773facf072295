/**
 * Files written by real torch.save (1.13, zip and legacy), a deflate re-pack, a training checkpoint, a safetensors
 * file laid out like the reference writer, and numpy .npy files, against the values torch/numpy reported when
 * writing them (scripts/make_weight_fixtures.py).
 */
import assert from "node:assert/strict";
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { test } from "node:test";
import { readNpy } from "../src/io/npy.js";
import type { Tensor } from "../src/tensor.js";
import { detectWeightsFormat, loadStateDict } from "../src/weights/index.js";
import { readPth } from "../src/weights/pth.js";
import { readSafetensorsFile } from "../src/weights/safetensors.js";
import { assertVggError, tmpDir } from "./weights-helpers.js";

const FIX = resolve(import.meta.dirname, "..", "..", "test", "fixtures", "weights");
const dir = tmpDir();

interface Expected {
  dtype: string;
  shape: number[];
  values?: (number | string)[];
  bits?: number[];
}
const EXPECTED = JSON.parse(readFileSync(join(FIX, "expected.json"), "utf8")) as Record<string, Record<string, Expected>>;

function same(name: string, got: Tensor | undefined, want: Expected): void {
  assert.ok(got, `${name} missing`);
  assert.equal(got.dtype, want.dtype, `${name} dtype`);
  assert.deepEqual(got.shape, want.shape, `${name} shape`);
  if (want.bits) {
    assert.ok(got.data instanceof Uint16Array, `${name} float16 as raw bits`);
    assert.deepEqual(Array.from(got.data), want.bits, name);
  } else if (got.dtype === "int64") {
    assert.deepEqual(Array.from(got.data as BigInt64Array, String), want.values, name);
  } else {
    // float32 values were written by torch as the exact doubles of the float32s, so equality is exact.
    assert.deepEqual(Array.from(got.data as Float32Array), want.values, name);
  }
}

for (const file of ["small_zip.pth", "small_legacy.pth", "small_deflate.pth", "checkpoint.pth"]) {
  test(`torch-written ${file} matches torch's own values`, () => {
    const want = EXPECTED[file];
    const sd = readPth(join(FIX, file));
    assert.deepEqual(
      [...sd.keys()],
      Object.keys(want).sort((a, b) => [...sd.keys()].indexOf(a) - [...sd.keys()].indexOf(b)),
    );
    assert.deepEqual(new Set(sd.keys()), new Set(Object.keys(want)));
    for (const [k, w] of Object.entries(want)) same(`${file}:${k}`, sd.get(k), w);
  });
}

test("torch keeps state_dict order; the reader keeps it too", () => {
  const keys = [...readPth(join(FIX, "small_zip.pth")).keys()];
  assert.deepEqual(keys.slice(0, 9), [
    "0.weight",
    "0.bias",
    "1.weight",
    "1.bias",
    "1.running_mean",
    "1.running_var",
    "1.num_batches_tracked",
    "4.weight",
    "4.bias",
  ]);
  assert.deepEqual([...readPth(join(FIX, "small_legacy.pth")).keys()], keys);
});

test("the reference-layout safetensors file matches torch's values and keeps its metadata", () => {
  const { tensors, metadata } = readSafetensorsFile(join(FIX, "reference.safetensors"));
  assert.deepEqual(metadata, { format: "pt", source: "make_weight_fixtures.py" });
  const want = EXPECTED["reference.safetensors"];
  assert.deepEqual(new Set(tensors.keys()), new Set(Object.keys(want)));
  for (const [k, w] of Object.entries(want)) same(`reference.safetensors:${k}`, tensors.get(k), w);
});

for (const [file, want] of Object.entries(EXPECTED.npy)) {
  test(`numpy-written ${file} reads back numpy's values`, () => same(file, readNpy(join(FIX, file)), want));
}

test("numpy's Fortran-order 2-D array is refused, not silently transposed", () => {
  const p = join(FIX, "fortran.npy");
  assertVggError(() => readNpy(p), p, /Fortran-order/);
});

test("loadStateDict goes by content: misnamed files still load, other files are refused clearly", () => {
  const pthAsSt = join(dir, "weights.safetensors");
  copyFileSync(join(FIX, "small_zip.pth"), pthAsSt);
  const stAsPth = join(dir, "weights.pth");
  copyFileSync(join(FIX, "reference.safetensors"), stAsPth);
  const legacyAsBin = join(dir, "weights.bin");
  copyFileSync(join(FIX, "small_legacy.pth"), legacyAsBin);
  assert.equal(detectWeightsFormat(pthAsSt), "pth-zip");
  assert.equal(detectWeightsFormat(stAsPth), "safetensors");
  assert.equal(detectWeightsFormat(legacyAsBin), "pth-legacy");
  assert.equal(detectWeightsFormat(join(FIX, "f4.npy")), "npy");
  assert.equal(loadStateDict(pthAsSt).size, Object.keys(EXPECTED["small_zip.pth"]).length);
  assert.equal(loadStateDict(stAsPth).size, Object.keys(EXPECTED["reference.safetensors"]).length);
  same("legacy 0.weight", loadStateDict(legacyAsBin).get("0.weight"), EXPECTED["small_legacy.pth"]["0.weight"]);
  same("checkpoint 4.bias", loadStateDict(join(FIX, "checkpoint.pth")).get("4.bias"), EXPECTED["checkpoint.pth"]["4.bias"]);

  const npy = join(FIX, "f4.npy");
  assertVggError(() => loadStateDict(npy), npy, /is a \.npy array, not a weights file/);
  for (const [name, bytes] of [
    ["empty.pth", new Uint8Array(0)],
    ["text.pth", new TextEncoder().encode("version https://git-lfs.github.com/spec/v1\noid sha256:abc\n")],
    ["pickle.pth", Uint8Array.from([0x80, 0x02, 0x4b, 0x01, 0x2e])],
    ["html.safetensors", new TextEncoder().encode("<!DOCTYPE html><html>Not Found</html>")],
  ] as const) {
    const p = join(dir, name);
    writeFileSync(p, bytes);
    assert.equal(detectWeightsFormat(p), null, name);
    assertVggError(() => loadStateDict(p), p, /unknown weights format \(want a PyTorch \.pth\/\.pt or a \.safetensors state dict\)/);
  }
  const missing = join(dir, "nope.pth");
  assertVggError(() => loadStateDict(missing), missing, /no such file or directory/);
});
