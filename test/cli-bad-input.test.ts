/**
 * Bad input through the real `vgg` binary: every case must end in one line on stderr that names the file and the
 * problem, a non-zero exit, no stack trace, and no --out file (neither created nor replaced, no temp files left).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { withFile } from "../src/io/atomic.js";
import { writeNpy } from "../src/io/npy.js";
import { writeSafetensors } from "../src/weights/index.js";
import { readPth, readZipDirectory } from "../src/weights/pth.js";
import { assertCleanError, pool, ROOT, type RunResult, tmp, vgg, vggAsync } from "./helpers.js";
import { legacyPth, PickleBuilder, zipPth } from "./weights-helpers.js";

const G = join(ROOT, "test", "fixtures", "golden");
const X = join(G, "x_b2_c3_32.npy");
/** The models of the golden fixtures vgg11_compact_d16.pth (zip) and vgg11_bn_compact_d16.pth (legacy). */
const SMALL = ["--width-divisor", "16", "--head", "compact", "--num-classes", "10"];
const V11 = ["--arch", "vgg11", ...SMALL];
const V11BN = ["--arch", "vgg11_bn", ...SMALL];
const ZIP = join(G, "vgg11_compact_d16.pth");
const LEGACY = join(G, "vgg11_bn_compact_d16.pth");

const dir = tmp("vgg-bad-input-");
/** Every --out of a failing run goes here; the directory must stay empty but for the sentinels. */
const outs = join(dir, "outs");
mkdirSync(outs);
let outCount = 0;

function esc(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** A message naming `file` and then matching `problem`. */
function about(file: string, problem: RegExp): RegExp {
  return new RegExp(`${esc(file)}: .*${problem.source}`);
}

function write(name: string, bytes: Uint8Array | string): string {
  const p = join(dir, name);
  writeFileSync(p, bytes);
  return p;
}

function cut(src: string, name: string, length: number): string {
  const b = readFileSync(src);
  assert.ok(length < b.length);
  return write(name, b.subarray(0, length));
}

function patch(src: string, name: string, edit: (b: Buffer) => void): string {
  const b = Buffer.from(readFileSync(src));
  edit(b);
  return write(name, b);
}

/** Runs at most this many `vgg` processes at once (start-up dominates; the machine is shared). */
const WIDTH = 2;

/** Failing runs collected per test and run together: each must fail cleanly and leave no --out file behind. */
function batch() {
  const jobs: (() => Promise<RunResult>)[] = [];
  return {
    fails(args: string[], pattern: RegExp, ext = ".npy"): void {
      const out = join(outs, `out${outCount++}${ext}`);
      jobs.push(async () => {
        const r = await vggAsync([...args, "--out", out]);
        try {
          assertCleanError(r, pattern);
        } catch (err) {
          throw new Error(`vgg ${args.join(" ")}: ${(err as Error).message}`);
        }
        assert.equal(existsSync(out), false, `${out} was created by a failing run`);
        return r;
      });
    },
    run: () => pool(jobs, WIDTH),
  };
}

const infer = (weights: string, model = V11, input = X) => ["infer", ...model, "--weights", weights, "--input", input];
const convert = (input: string, model: string[] = []) => ["convert", "--in", input, ...model];

test("truncated .pth files (zip and legacy) are refused, by infer and by convert", async () => {
  const runs = batch();
  const zipLen = readFileSync(ZIP).length;
  // Inside the first entry, in the middle, and just the end record cut.
  for (const n of [200, Math.floor(zipLen / 2), zipLen - 10]) {
    const p = cut(ZIP, `trunc-${n}.pth`, n);
    if (n === 200) runs.fails(convert(p), about(p, /truncated/), ".safetensors");
    else runs.fails(infer(p), about(p, /truncated/));
  }
  const legacyLen = readFileSync(LEGACY).length;
  // Inside the first pickles, inside the storage list / first storages, and one byte short.
  for (const n of [1000, Math.floor(legacyLen / 2), legacyLen - 1]) {
    const p = cut(LEGACY, `trunc-legacy-${n}.pth`, n);
    if (n === 1000) runs.fails(convert(p), about(p, /truncated/), ".safetensors");
    else runs.fails(infer(p, V11BN), about(p, /truncated/));
  }
  await runs.run();
});

test("bit-flipped and corrupt .pth files are refused", async () => {
  const runs = batch();
  // A flipped bit in a tensor's bytes: only the zip's CRC-32 can tell, and it must.
  const entries = withFile(ZIP, (f) => readZipDirectory(f));
  const big = entries.reduce((a, b) => (b.size > a.size ? b : a));
  const pkl = entries.find((e) => e.name.endsWith("/data.pkl"));
  assert.ok(pkl && big.size > 1000);
  const dataFlip = patch(ZIP, "flip-data.pth", (b) => {
    // Central directory offset + local header (30) + name + extra; the middle of the data is safely inside.
    const at = big.localOffset + 30 + b.readUInt16LE(big.localOffset + 26) + b.readUInt16LE(big.localOffset + 28);
    b[at + Math.floor(big.size / 2)] ^= 0x04;
  });
  runs.fails(infer(dataFlip), about(dataFlip, new RegExp(`CRC mismatch in '${esc(big.name)}'`)));
  const pklFlip = patch(ZIP, "flip-pkl.pth", (b) => {
    b[pkl.localOffset + 30 + b.readUInt16LE(pkl.localOffset + 26) + b.readUInt16LE(pkl.localOffset + 28) + 100] ^= 0x01;
  });
  runs.fails(infer(pklFlip), about(pklFlip, /CRC mismatch in '.*data\.pkl'/));
  // The end-of-central-directory signature destroyed.
  const noEnd = patch(ZIP, "no-eocd.pth", (b) => {
    b[b.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]))] = 0;
  });
  runs.fails(infer(noEnd), about(noEnd, /end of central directory not found/));
  // A legacy file has no checksums, but garbage in its pickle is still caught by the unpickler.
  const garbage = patch(LEGACY, "garbage-legacy.pth", (b) => b.fill(0xfe, 400, 440));
  runs.fails(infer(garbage, V11BN), about(garbage, /legacy pickle: /));
  // A module name in the pickle corrupted into one that is not on the allow-list.
  const renamed = patch(LEGACY, "renamed-legacy.pth", (b) => {
    const at = b.indexOf("torch._utils");
    assert.ok(at > 0);
    b.write("torcx", at);
  });
  runs.fails(infer(renamed, V11BN), about(renamed, /forbidden global 'torcx\._utils\._rebuild_tensor_v2'/));
  await runs.run();
});

test("truncated and corrupt .safetensors files are refused", async () => {
  const runs = batch();
  const st = join(dir, "good.safetensors");
  writeSafetensors(st, readPth(ZIP));
  const len = readFileSync(st).length;
  const headerLen = Number(readFileSync(st).readBigUInt64LE(0));
  // Inside the header, inside the data, one byte short.
  for (const n of [20, 8 + headerLen + 100, len - 1]) {
    const p = cut(st, `trunc-${n}.safetensors`, n);
    if (n === len - 1) runs.fails(convert(p), about(p, /truncated file\?/), ".safetensors");
    else runs.fails(infer(p), about(p, /truncated file\?/));
  }
  const badJson = patch(st, "badjson.safetensors", (b) => b.fill(0x21, 30, 40));
  runs.fails(infer(badJson), about(badJson, /safetensors header is not valid JSON/));
  // A shape that no longer matches the byte range it claims (same length, so the header still parses).
  const badShape = patch(st, "badshape.safetensors", (b) => {
    const at = b.indexOf('"shape":[4,3,3,3]');
    assert.ok(at > 0);
    b.write('"shape":[4,3,3,9]', at);
  });
  runs.fails(
    infer(badShape),
    about(badShape, /tensor 'features\.0\.weight': shape \[4, 3, 3, 9\] of F32 needs 1296 bytes but data_offsets span 432/),
  );
  await runs.run();
});

/** A pickle that would run `touch marker` when unpickled by Python: via os.system, or via builtins.eval. */
function evilPickle(kind: "system" | "eval", marker: string, wrapInStateDict: boolean): Uint8Array {
  const p = new PickleBuilder().proto(2);
  if (wrapInStateDict) p.global("collections", "OrderedDict").emptyTuple().reduce().str("features.0.weight");
  if (kind === "system") p.global("os", "system").str(`touch '${marker}'`);
  else p.global("builtins", "eval").str(`__import__('os').system("touch '${marker}'")`);
  p.raw(0x85).reduce(); // TUPLE1, REDUCE: call it
  if (wrapInStateDict) p.raw(0x73); // SETITEM
  return p.stop().bytes();
}

test("a .pth whose pickle names os.system or builtins.eval is refused and never runs", async (t) => {
  const runs = batch();
  // Control: Python's own unpickler does run these payloads (so the markers below would appear if we did too).
  const py = spawnSync("/usr/bin/python3", ["--version"]);
  if (!py.error && py.status === 0) {
    for (const kind of ["system", "eval"] as const) {
      const control = join(dir, `control-${kind}`);
      const pk = write(`control-${kind}.pkl`, evilPickle(kind, control, true));
      const r = spawnSync("/usr/bin/python3", ["-c", "import pickle,sys; pickle.loads(open(sys.argv[1],'rb').read())", pk], {
        encoding: "utf8",
      });
      assert.equal(r.status, 0, r.stderr);
      assert.ok(existsSync(control), `control payload (${kind}) did not run in Python`);
    }
  } else t.diagnostic("python3 not found: the payloads' control run is skipped");

  const cases = [
    { kind: "system", wrap: false, legacy: false, qual: "os.system" },
    { kind: "eval", wrap: true, legacy: false, qual: "builtins.eval" },
    { kind: "system", wrap: true, legacy: true, qual: "os.system" },
    { kind: "eval", wrap: false, legacy: true, qual: "builtins.eval" },
  ] as const;
  const markers: string[] = [];
  for (const [i, c] of cases.entries()) {
    const marker = join(dir, `pwned-${i}`);
    markers.push(marker);
    const pickle = evilPickle(c.kind, marker, c.wrap);
    const p = write(`evil-${i}.pth`, c.legacy ? legacyPth([], { pickle }) : zipPth([], { pickle }));
    const forbidden = about(p, new RegExp(`forbidden global '${esc(c.qual)}' in pickle`));
    runs.fails(infer(p), forbidden);
    if (i < 2) runs.fails(i ? convert(p) : convert(p, V11), forbidden, ".safetensors");
  }
  await runs.run();
  for (const m of markers) assert.equal(existsSync(m), false, `a payload ran: ${m} exists`);
});

test("truncated, corrupt and wrong-dtype .npy inputs are refused", async () => {
  const runs = batch();
  const xLen = readFileSync(X).length;
  const t1 = cut(X, "trunc-data.npy", xLen - 1000);
  runs.fails(["infer", ...V11, "--input", t1], about(t1, /needs 24576 data bytes but the file has \d+ \(truncated\?\)/));
  const t2 = cut(X, "trunc-header.npy", 50);
  runs.fails(["infer", ...V11, "--input", t2], about(t2, /truncated \.npy file/));
  const badHeader = patch(X, "bad-header.npy", (b) => b.fill(0x3f, 20, 40));
  runs.fails(["infer", ...V11, "--input", badHeader], about(badHeader, /bad \.npy header/));
  const badMagic = patch(X, "bad-magic.npy", (b) => b.write("NUMPX", 1));
  runs.fails(["infer", ...V11, "--input", badMagic], about(badMagic, /not a \.npy file \(bad magic\)/));
  const i64 = join(dir, "int64.npy");
  writeNpy(i64, { dtype: "int64", shape: [1, 3, 32, 32], data: new BigInt64Array(3 * 32 * 32) });
  runs.fails(["infer", ...V11, "--input", i64], about(i64, /want float32, got int64/));
  const flat = join(dir, "flat.npy");
  writeNpy(flat, { dtype: "float32", shape: [3, 32, 32], data: new Float32Array(3 * 32 * 32) });
  runs.fails(["infer", ...V11, "--input", flat], about(flat, /want a float32 NCHW array, got shape \[3, 32, 32\]/));
  const empty = join(dir, "empty-batch.npy");
  writeNpy(empty, { dtype: "float32", shape: [0, 3, 32, 32], data: new Float32Array(0) });
  runs.fails(["infer", ...V11, "--input", empty], about(empty, /the batch is empty/));
  const wide = join(dir, "nonsquare.npy");
  writeNpy(wide, { dtype: "float32", shape: [1, 3, 32, 40], data: new Float32Array(3 * 32 * 40) });
  runs.fails(["infer", ...V11, "--input", wide], about(wide, /images must be square, got 32x40/));
  const small = join(dir, "small.npy");
  writeNpy(small, { dtype: "float32", shape: [1, 3, 16, 16], data: new Float32Array(3 * 16 * 16) });
  runs.fails(["infer", ...V11, "--input", small], about(small, /input size 16 is under the minimum 32 for vgg11/));
  runs.fails(infer(ZIP, V11, small), about(small, /input size 16 is under the minimum 32/));
  await runs.run();
});

test("weights for another arch, or for other model options, name the key and both shapes (or the missing key)", async () => {
  const runs = batch();
  const v13 = join(G, "vgg13_compact_d16.pth");
  runs.fails(
    infer(v13),
    about(v13, /missing key 'features\.3\.weight' \(shape \[8, 4, 3, 3\]\) for vgg11 \(compact head, 10 classes, width \/16\)/),
  );
  runs.fails(convert(v13, V11), about(v13, /missing key 'features\.3\.weight' \(shape \[8, 4, 3, 3\]\)/), ".safetensors");
  // Config C (1x1 convs) loaded as D: same keys, different kernel shapes.
  const v16c = join(G, "vgg16_1x1_compact_d16.pth");
  runs.fails(
    infer(v16c, ["--arch", "vgg16", ...SMALL]),
    about(
      v16c,
      /key 'features\.14\.weight' has shape \[16, 16, 1, 1\], vgg16 \(compact head, 10 classes, width \/16\) needs \[16, 16, 3, 3\]/,
    ),
  );
  // BN weights without BN: the model's next conv is not where the file has it.
  runs.fails(infer(LEGACY), about(LEGACY, /missing key 'features\.3\.weight'/));
  // Plain weights into a BN model: the BN parameters are missing.
  runs.fails(infer(ZIP, V11BN), about(ZIP, /missing key 'features\.1\.weight' \(shape \[4\]\) for vgg11_bn/));
  runs.fails(
    infer(ZIP, ["--arch", "vgg11", "--width-divisor", "16", "--head", "compact", "--num-classes", "7"]),
    about(ZIP, /key 'classifier\.weight' has shape \[10, 32\], vgg11 \(compact head, 7 classes, width \/16\) needs \[7, 32\]/),
  );
  runs.fails(
    infer(ZIP, ["--arch", "vgg11", "--width-divisor", "16", "--num-classes", "10"]),
    about(ZIP, /missing key 'classifier\.0\.weight'/),
  );
  // A file whose keys only partly carry a DataParallel prefix is not guessed at: the stray key is named.
  const mixed = new Map(readPth(ZIP));
  const w = mixed.get("features.0.weight");
  assert.ok(w);
  mixed.delete("features.0.weight");
  mixed.set("module.features.0.weight", w);
  const mixedSt = join(dir, "mixed-prefix.safetensors");
  writeSafetensors(mixedSt, mixed);
  runs.fails(infer(mixedSt), about(mixedSt, /missing key 'features\.0\.weight'/));
  await runs.run();
});

test("directories and missing files are refused, naming the path", async () => {
  const runs = batch();
  runs.fails(infer(G), about(G, /is a directory, not a file/));
  runs.fails(["infer", ...V11, "--input", G], about(G, /is a directory, not a file/));
  runs.fails(convert(G), about(G, /is a directory, not a file/), ".safetensors");
  const nope = join(dir, "nope.pth");
  runs.fails(infer(nope), about(nope, /no such file or directory/));
  runs.fails(["infer", ...V11, "--input", join(dir, "nope.npy")], about(join(dir, "nope.npy"), /no such file or directory/));
  runs.fails(infer(X), about(X, /this is a \.npy array, not a weights file/));
  // The output's directory does not exist, or the output is a directory.
  const r = vgg(["infer", ...V11, "--input", X, "--out", join(dir, "no", "such", "o.npy")]);
  assertCleanError(r, about(join(dir, "no", "such", "o.npy"), /no such file or directory/));
  assertCleanError(vgg(["infer", ...V11, "--input", X, "--out", outs]), about(outs, /is a directory, not a file/));
  runs.fails(convert(ZIP), /name the output '\.safetensors', not '\.pth'/, ".pth");
  await runs.run();
});

test("bad flags give one clean line naming the flag", async () => {
  const runs = batch();
  // --help is not a failure (it used to exit 1).
  const help = await vggAsync(["convert", "--help"]);
  assert.equal(help.status, 0, help.stderr);
  assert.match(help.stdout, /--in <file>/);
  runs.fails(
    ["infer", "--arch", "vgg11", "--width-divisor", "0", "--input", X],
    /option '--width-divisor <d>' argument '0' is invalid\. must be at least 1/,
  );
  runs.fails(["infer", "--arch", "vgg11", "--dropout", "2", "--input", X], /--dropout must be in \[0, 1\), got 2/);
  runs.fails(["infer", "--arch", "vgg11", "--seed", "x", "--input", X], /option '--seed <n>' argument 'x' is invalid\. not an integer/);
  runs.fails(["infer", "--arch", "vgg11", "--num-classes", "0", "--input", X], /--num-classes .* must be at least 1/);
  runs.fails(["infer", "--arch", "vgg11", "--config", "64,M,0", "--input", X], /bad config entry '0'/);
  runs.fails(["infer", "--arch", "vgg99", "--input", X], /unknown arch 'vgg99'/);
  runs.fails(
    ["convert", "--in", ZIP, "--num-classes", "10"],
    /--num-classes describes the model to check against; give --arch too/,
    ".safetensors",
  );
  await runs.run();
});

test("a failing run leaves an existing --out file byte for byte as it was", () => {
  const sentinel = Buffer.from("sentinel: a previous good result\n");
  const out = join(outs, "keep.npy");
  const small = join(dir, "keep-small.npy");
  writeNpy(small, { dtype: "float32", shape: [1, 3, 16, 16], data: new Float32Array(3 * 16 * 16) });
  const truncated = cut(ZIP, "keep-trunc.pth", 5000);
  const failing: [string[], RegExp][] = [
    [infer(ZIP, ["--arch", "vgg11", "--width-divisor", "16", "--head", "compact", "--num-classes", "7"]), /classifier\.weight/],
    [infer(truncated), /truncated/],
    [["infer", ...V11, "--input", small], /under the minimum 32/],
  ];
  for (const [args, pattern] of failing) {
    writeFileSync(out, sentinel);
    assertCleanError(vgg([...args, "--out", out]), pattern);
    assert.deepEqual(readFileSync(out), sentinel, `${args.join(" ")} touched ${out}`);
  }
  // convert: a good earlier conversion survives a failing one.
  const st = join(outs, "keep.safetensors");
  const ok = vgg(["convert", "--in", ZIP, "--out", st]);
  assert.equal(ok.status, 0, ok.stderr);
  const before = readFileSync(st);
  for (const args of [convert(truncated), convert(join(G, "vgg13_compact_d16.pth"), V11)]) {
    assertCleanError(vgg([...args, "--out", st]), /\.pth: /);
    assert.deepEqual(readFileSync(st), before);
  }
  // A real run does replace it (the sentinel is not protected by accident).
  writeFileSync(out, sentinel);
  const r = vgg(["infer", ...V11, "--weights", ZIP, "--input", X, "--out", out]);
  assert.equal(r.status, 0, r.stderr);
  assert.notDeepEqual(readFileSync(out), sentinel);
});

test("failing runs left nothing in the output directory (no partial or temp files)", () => {
  assert.ok(outCount > 30, `only ${outCount} failing runs`);
  assert.deepEqual(readdirSync(outs).sort(), ["keep.npy", "keep.safetensors"]);
});
