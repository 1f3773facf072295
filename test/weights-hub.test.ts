/**
 * Weights by name or URL (src/weights/hub.ts, `vgg weights`): the torchvision table, and downloads from a loopback
 * server started here (never the internet): hash checks, resume, stalls, redirects, the mirror, the cache check.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { preprocessImage, presetPreprocessing } from "../src/data/preprocessing.js";
import { float32 } from "../src/tensor.js";
import {
  cachedFiles,
  cachePath,
  entryFor,
  entryUrl,
  HASH_REGEX,
  isWeightsRef,
  partialPath,
  resolveWeights,
  sidecarPath,
  verifyFile,
} from "../src/weights/hub.js";
import { loadStateDict } from "../src/weights/index.js";
import { entryPreprocessing, PRETRAINED, type PretrainedEntry, TORCHVISION_BASE_URL } from "../src/weights/pretrained.js";
import { writeSafetensors } from "../src/weights/safetensors.js";
import { archSpec } from "../src/zoo/configs.js";
import { buildModel, paramCount } from "../src/zoo/model.js";
import { assertCleanError, BIN, ROOT, type RunResult, tmp } from "./helpers.js";

const dir = tmp("vgg-hub-");
let body: Buffer; // a real (small) safetensors state dict
let hash8: string;
let good: string; // its file name, carrying its own hash prefix
let server: http.Server;
let base: string;
/** Every request the server saw: path and Range header. */
const seen: { path: string; range?: string }[] = [];
const routes = new Map<string, (req: http.IncomingMessage, res: http.ServerResponse) => void>();

/** A static file with Range support (206, 416), as download.pytorch.org answers. */
function serveFile(buf: Buffer) {
  return (req: http.IncomingMessage, res: http.ServerResponse) => {
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? "");
    if (!m) return res.writeHead(200, { "content-length": buf.length }).end(buf);
    const from = Number(m[1]);
    if (from >= buf.length) return res.writeHead(416, { "content-range": `bytes */${buf.length}` }).end();
    res.writeHead(206, { "content-length": buf.length - from, "content-range": `bytes ${from}-${buf.length - 1}/${buf.length}` });
    res.end(buf.subarray(from));
  };
}

/** Serves `buf`, except that the first request gets `cut` bytes of it and then a dead connection. */
function cutOnce(buf: Buffer, cut: number) {
  let first = true;
  const file = serveFile(buf);
  return (req: http.IncomingMessage, res: http.ServerResponse) => {
    if (!first) return file(req, res);
    first = false;
    res.writeHead(200, { "content-length": buf.length });
    res.write(buf.subarray(0, cut), () => setTimeout(() => res.socket?.destroy(), 50));
  };
}

before(async () => {
  const sd = new Map([
    [
      "features.0.weight",
      float32(
        [64, 3, 3, 3],
        Float32Array.from({ length: 1728 }, (_, i) => Math.sin(i)),
      ),
    ],
    [
      "classifier.bias",
      float32(
        [50_000],
        Float32Array.from({ length: 50_000 }, (_, i) => i / 7),
      ),
    ],
  ]);
  writeSafetensors(join(dir, "w.safetensors"), sd);
  body = fs.readFileSync(join(dir, "w.safetensors"));
  hash8 = createHash("sha256").update(body).digest("hex").slice(0, 8);
  good = `tiny-${hash8}.safetensors`;
  server = http.createServer((req, res) => {
    const path = (req.url ?? "").split("?")[0];
    seen.push({ path, range: req.headers.range });
    const route = routes.get(path);
    if (route) return route(req, res);
    res.writeHead(404).end("not found");
  });
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  routes.set(`/files/${good}`, serveFile(body));
  routes.set("/files/tiny-00000000.safetensors", serveFile(body));
  routes.set(`/redirect/${good}`, (_req, res) => res.writeHead(302, { location: `/files/${good}` }).end());
});

after(() => {
  server.closeAllConnections();
  server.close();
  delete process.env.VGG_HOME;
  delete process.env.VGG_WEIGHTS_MIRROR;
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A fresh, empty cache for one test. */
function freshHome(): string {
  const home = fs.mkdtempSync(join(dir, "home-"));
  process.env.VGG_HOME = home;
  return home;
}

function requestsTo(path: string): { path: string; range?: string }[] {
  return seen.filter((s) => s.path === path);
}

// ---------------------------------------------------------------------------------------------------------------
// The table

test("the table is torchvision's: names, files, hash prefixes, URLs, defaults, param counts", () => {
  assert.deepEqual(
    PRETRAINED.map((e) => e.name),
    [
      "vgg11.IMAGENET1K_V1",
      "vgg11_bn.IMAGENET1K_V1",
      "vgg13.IMAGENET1K_V1",
      "vgg13_bn.IMAGENET1K_V1",
      "vgg16.IMAGENET1K_V1",
      "vgg16.IMAGENET1K_FEATURES",
      "vgg16_bn.IMAGENET1K_V1",
      "vgg19.IMAGENET1K_V1",
      "vgg19_bn.IMAGENET1K_V1",
    ],
  );
  assert.equal(TORCHVISION_BASE_URL, "https://download.pytorch.org/models/");
  for (const e of PRETRAINED) {
    assert.equal(e.name, `${e.arch}.${e.weights}`);
    assert.equal(e.url, TORCHVISION_BASE_URL + e.file);
    assert.equal(HASH_REGEX.exec(e.file)?.[1], e.sha256Prefix, e.file);
    assert.match(e.sha256Prefix, /^[0-9a-f]{8}$/);
    assert.ok(archSpec(e.arch), e.arch);
    assert.equal(paramCount(buildModel(e.arch)), e.numParams, e.name);
    assert.equal(e.default, e.weights === "IMAGENET1K_V1");
  }
  const v16 = PRETRAINED.find((e) => e.name === "vgg16.IMAGENET1K_V1");
  assert.deepEqual([v16?.file, v16?.top1, v16?.top5, v16?.fileSizeMiB], ["vgg16-397923af.pth", 71.592, 90.382, 527.796]);
  const feat = PRETRAINED.find((e) => e.weights === "IMAGENET1K_FEATURES");
  assert.deepEqual(
    [feat?.file, feat?.top1, feat?.numClasses, feat?.preset],
    ["vgg16_features-amdegroot-88682ab5.pth", null, null, "vgg16-features"],
  );
});

test("each entry's preset is its torchvision transform (resize 256, crop 224, mean, std)", () => {
  for (const e of PRETRAINED) {
    const p = entryPreprocessing(e);
    assert.equal(p.resizeShorter, e.transform.resize, e.name);
    assert.equal(p.transform.crop, e.transform.crop, e.name);
    assert.equal(p.bgr, false, `${e.name}: torchvision feeds RGB`);
    for (let c = 0; c < 3; c++) {
      assert.ok(Math.abs((p.transform.mean?.[c] ?? Number.NaN) - e.transform.mean[c]) < 1e-12, e.name);
      assert.ok(Math.abs((p.transform.std?.[c] ?? Number.NaN) - e.transform.std[c]) < 1e-12, e.name);
    }
  }
});

test("the vgg16-features preset: RGB, 0-255 minus (123, 117, 104), unscaled", () => {
  const [h, w] = [256, 300];
  const data = new Uint8Array(3 * h * w);
  for (const [c, v] of [200, 100, 50].entries()) data.fill(v, c * h * w, (c + 1) * h * w);
  const x = preprocessImage({ data, c: 3, h, w }, presetPreprocessing("vgg16-features", 224));
  assert.deepEqual([x.c, x.h, x.w], [3, 224, 224]);
  const want = [200 - 0.48235 * 255, 100 - 0.45882 * 255, 50 - 0.40784 * 255];
  for (let c = 0; c < 3; c++) {
    for (const k of [0, 224 * 224 - 1])
      assert.ok(Math.abs(x.data[c * 224 * 224 + k] - want[c]) < 1e-3, `channel ${c}: ${x.data[c * 224 * 224 + k]}`);
  }
});

test("names: imagenet, entries, arch pairing, refs", () => {
  assert.equal(entryFor("vgg16", "imagenet").name, "vgg16.IMAGENET1K_V1");
  assert.equal(entryFor("vgg16", "vgg16.IMAGENET1K_FEATURES").file, "vgg16_features-amdegroot-88682ab5.pth");
  assert.equal(entryFor(undefined, "vgg19_bn.imagenet1k_v1").name, "vgg19_bn.IMAGENET1K_V1");
  assert.throws(() => entryFor(undefined, "imagenet"), /need an arch.*vgg11, vgg11_bn/);
  assert.throws(
    () => entryFor("vgg11_lrn", "imagenet"),
    /vgg11_lrn has no published ImageNet weights \(torchvision publishes weights for vgg11, /,
  );
  assert.throws(() => entryFor("vgg16_1x1", "imagenet"), /vgg16_1x1 has no published/);
  assert.throws(() => entryFor("vgg19", "vgg16.IMAGENET1K_FEATURES"), /for vgg16, not vgg19 \(wrong arch\/weights pairing\)/);
  assert.throws(() => entryFor("vgg16_bn", "vgg16.IMAGENET1K_V1"), /wrong arch\/weights pairing/);
  assert.throws(
    () => entryFor("vgg16", "vgg16.IMAGENET1K_V2"),
    /unknown weights 'vgg16.IMAGENET1K_V2' \(known: imagenet, vgg11.IMAGENET1K_V1/,
  );
  for (const s of ["imagenet", "vgg16.IMAGENET1K_V1", "vgg16.IMAGENET1K_V2", "https://x/y-ab.pth", "HTTP://x/y"])
    assert.ok(isWeightsRef(s), s);
  for (const s of ["vgg16.pth", "vgg16.safetensors", "w/imagenet.pth", "ftp://x/y.pth", "vgg16"]) assert.ok(!isWeightsRef(s), s);
});

test("a local file is returned as is, with no request; a missing one is a one-line error", async () => {
  freshHome();
  const n = seen.length;
  const f = join(dir, "w.safetensors");
  assert.equal(await resolveWeights(f, { arch: "vgg16" }), f);
  assert.equal(seen.length, n);
  await assert.rejects(resolveWeights(join(dir, "nope.pth")), /nope\.pth: no such file or directory \(nor is it imagenet/);
});

// ---------------------------------------------------------------------------------------------------------------
// Downloads

test("a URL downloads once into $VGG_HOME/weights, hash-checked; the next call uses the cache", async () => {
  const home = freshHome();
  const url = `${base}/files/${good}`;
  const before = requestsTo(`/files/${good}`).length;
  const got = await resolveWeights(url);
  assert.equal(got, join(home, "weights", good));
  assert.equal(got, cachePath(url));
  assert.deepEqual(fs.readFileSync(got), body);
  assert.equal(loadStateDict(got).get("classifier.bias")?.shape[0], 50_000);
  assert.ok(!fs.existsSync(partialPath(got)));
  const side = JSON.parse(fs.readFileSync(sidecarPath(got), "utf8"));
  assert.equal(side.sha256, createHash("sha256").update(body).digest("hex"));
  assert.equal(await resolveWeights(url), got);
  assert.equal(requestsTo(`/files/${good}`).length, before + 1, "the second call must not download");
  assert.deepEqual(cachedFiles(), [got]);
});

test("a redirect is followed; the file is cached under the requested URL's name", async () => {
  const home = freshHome();
  const got = await resolveWeights(`${base}/redirect/${good}`);
  assert.equal(got, join(home, "weights", good));
  assert.deepEqual(fs.readFileSync(got), body);
});

test("a download whose hash does not match its name is rejected and nothing lands in the cache", async () => {
  const home = freshHome();
  const url = `${base}/files/tiny-00000000.safetensors`;
  await assert.rejects(resolveWeights(url), (err: Error) => {
    assert.equal(err.name, "VggError");
    assert.match(
      err.message,
      new RegExp(`downloaded ${url} has SHA-256 ${hash8}.*not the 00000000\\.\\.\\. its name promises; deleted it`),
    );
    assert.ok(!err.message.includes("\n"));
    return true;
  });
  assert.deepEqual(fs.readdirSync(join(home, "weights")), []);
});

test("HTTP 404 names the status and the URL", async () => {
  freshHome();
  const url = `${base}/files/missing-12345678.pth`;
  await assert.rejects(resolveWeights(url), new RegExp(`^VggError: HTTP 404 Not Found from ${url}$`));
});

test("a connection cut mid-file keeps the partial file; the next call resumes with Range and ends byte-identical", async () => {
  const home = freshHome();
  const name = `cut-${hash8}.safetensors`;
  routes.set(`/files/${name}`, cutOnce(body, 80_000));
  const url = `${base}/files/${name}`;
  await assert.rejects(
    resolveWeights(url),
    /stopped after \d+ of \d+ bytes \(connection closed\); run again to resume from .*cut-.*\.partial$/,
  );
  const dest = join(home, "weights", name);
  assert.ok(!fs.existsSync(dest), "a cut download must not sit under the final name");
  const have = fs.statSync(partialPath(dest)).size;
  assert.ok(have > 0 && have <= 80_000, `partial holds ${have} bytes`);
  assert.equal(await resolveWeights(url), dest);
  const reqs = requestsTo(`/files/${name}`);
  assert.equal(reqs.length, 2);
  assert.equal(reqs[0].range, undefined);
  assert.equal(reqs[1].range, `bytes=${have}-`);
  assert.ok(fs.readFileSync(dest).equals(body));
  assert.ok(!fs.existsSync(partialPath(dest)));
});

test("a server that ignores Range (200) makes the download start over", async () => {
  const home = freshHome();
  const name = `norange-${hash8}.safetensors`;
  routes.set(`/files/${name}`, (_req, res) => res.writeHead(200, { "content-length": body.length }).end(body));
  const dest = join(home, "weights", name);
  fs.mkdirSync(join(home, "weights"));
  fs.writeFileSync(partialPath(dest), Buffer.alloc(5000, 7)); // bytes that are not the file's start
  assert.equal(await resolveWeights(`${base}/files/${name}`), dest);
  assert.equal(requestsTo(`/files/${name}`)[0].range, "bytes=5000-");
  assert.ok(fs.readFileSync(dest).equals(body));
});

test("416: a complete partial file is finished without a body; one longer than the file starts over", async () => {
  const home = freshHome();
  const name = `whole-${hash8}.safetensors`;
  routes.set(`/files/${name}`, serveFile(body));
  const dest = join(home, "weights", name);
  fs.mkdirSync(join(home, "weights"));
  fs.writeFileSync(partialPath(dest), body);
  assert.equal(await resolveWeights(`${base}/files/${name}`), dest);
  assert.deepEqual(
    requestsTo(`/files/${name}`).map((r) => r.range),
    [`bytes=${body.length}-`],
  );
  assert.ok(fs.readFileSync(dest).equals(body));

  fs.rmSync(dest);
  fs.writeFileSync(partialPath(dest), Buffer.concat([body, Buffer.alloc(10)]));
  assert.equal(await resolveWeights(`${base}/files/${name}`), dest);
  assert.ok(fs.readFileSync(dest).equals(body));
});

test("a stalled server times out with a clear message and keeps the partial file", async () => {
  const home = freshHome();
  const name = `stall-${hash8}.safetensors`;
  routes.set(`/files/${name}`, (_req, res) => {
    res.writeHead(200, { "content-length": body.length });
    res.write(body.subarray(0, 1000));
  });
  const url = `${base}/files/${name}`;
  const t0 = Date.now();
  await assert.rejects(
    resolveWeights(url, { timeoutMs: 300 }),
    new RegExp(
      `^VggError: no data from ${url} for 300 ms \\(timed out after 1000 of ${body.length} bytes\\); the partial download is kept at .*\\.partial and resumes on the next run$`,
    ),
  );
  assert.ok(Date.now() - t0 < 5000);
  assert.equal(fs.statSync(partialPath(join(home, "weights", name))).size, 1000);
});

test("a server that never answers times out as unreachable", async () => {
  freshHome();
  const name = `silent-${hash8}.safetensors`;
  routes.set(`/files/${name}`, () => {});
  process.env.VGG_DOWNLOAD_TIMEOUT_MS = "300";
  try {
    await assert.rejects(
      resolveWeights(`${base}/files/${name}`),
      /cannot download .* \(no answer within 300 ms\); offline\? put the file at /,
    );
  } finally {
    delete process.env.VGG_DOWNLOAD_TIMEOUT_MS;
  }
});

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const s = http.createServer();
  await new Promise<void>((done) => s.listen(0, "127.0.0.1", done));
  const port = (s.address() as AddressInfo).port;
  await new Promise((done) => s.close(done));
  return port;
}

test("unreachable: the message names the URL and the exact cache path to place the file at", async () => {
  const home = freshHome();
  const url = `http://127.0.0.1:${await closedPort()}/models/${good}`;
  const dest = join(home, "weights", good);
  await assert.rejects(resolveWeights(url), (err: Error) => {
    assert.equal(err.message, `cannot download ${url} (connection refused, ECONNREFUSED); offline? put the file at ${dest} by hand`);
    return true;
  });
  // Placed by hand, the same call then works offline.
  fs.copyFileSync(join(dir, "w.safetensors"), dest);
  assert.equal(await resolveWeights(url), dest);
});

test("a corrupted cached file is found and reported in one line; size+mtime unchanged skips the re-hash", async () => {
  freshHome();
  const url = `${base}/files/${good}`;
  const dest = await resolveWeights(url);
  fs.utimesSync(dest, 1e9, 1e9);
  assert.equal((await verifyFile(dest)).ok, true); // records the new mtime
  const fd = fs.openSync(dest, "r+");
  fs.writeSync(fd, Buffer.from([0xff]), 0, 1, 1000);
  fs.closeSync(fd);
  fs.utimesSync(dest, 1e9, 1e9);
  // Same size and mtime as recorded: trusted without reading 500 MB (the point of the record) ...
  assert.equal(await resolveWeights(url), dest);
  // ... while a full verify re-hashes and catches it,
  const v = await verifyFile(dest);
  assert.deepEqual([v.ok, v.against], [false, "name"]);
  // and any change of mtime makes the next use re-hash too.
  fs.utimesSync(dest, 2e9, 2e9);
  await assert.rejects(
    resolveWeights(url),
    new RegExp(
      `^VggError: cached weights ${dest} are corrupt \\(its hash does not match its name: .*want ${hash8}\\.\\.\\.\\): delete the file or run \`vgg weights pull --force ${url}\`$`,
    ),
  );
  // --force downloads it again.
  assert.equal(await resolveWeights(url, { force: true }), dest);
  assert.ok(fs.readFileSync(dest).equals(body));
});

/** A stand-in table: the real entries' files are 500 MB and their hashes no test file can match. */
function testTable(sizeMiB = body.length / 2 ** 20): PretrainedEntry[] {
  const e = PRETRAINED[0];
  return [{ ...e, file: good, url: `${TORCHVISION_BASE_URL}${good}`, sha256Prefix: hash8, fileSizeMiB: +sizeMiB.toFixed(3) }];
}

test("VGG_WEIGHTS_MIRROR replaces download.pytorch.org for table entries", async () => {
  const home = freshHome();
  routes.set(`/mirror/${good}`, serveFile(body));
  process.env.VGG_WEIGHTS_MIRROR = `${base}/mirror/`;
  try {
    const table = testTable();
    assert.equal(entryUrl(table[0]), `${base}/mirror/${good}`);
    assert.equal(await resolveWeights("imagenet", { arch: "vgg11", table }), join(home, "weights", good));
    assert.equal(requestsTo(`/mirror/${good}`).length, 1);
    await assert.rejects(resolveWeights("vgg11.IMAGENET1K_V1", { arch: "vgg13", table }), /wrong arch\/weights pairing/);
    // A mirror serving another size than torchvision lists is refused before the download.
    freshHome();
    await assert.rejects(
      resolveWeights("imagenet", { arch: "vgg11", table: testTable(527.796) }),
      new RegExp(`serves ${body.length} bytes .* but torchvision lists 527.796 MB for ${good}: not the published file`),
    );
    process.env.VGG_WEIGHTS_MIRROR = "/srv/weights";
    assert.throws(() => entryUrl(table[0]), /VGG_WEIGHTS_MIRROR must be an http\(s\):\/\/ URL/);
  } finally {
    delete process.env.VGG_WEIGHTS_MIRROR;
  }
});

test("two resolves of one file in one process share the download", async () => {
  const home = freshHome();
  const name = `twice-${hash8}.safetensors`;
  routes.set(`/files/${name}`, serveFile(body));
  const url = `${base}/files/${name}`;
  const [a, b] = await Promise.all([resolveWeights(url), resolveWeights(url)]);
  assert.equal(a, join(home, "weights", name));
  assert.equal(b, a);
  assert.equal(requestsTo(`/files/${name}`).length, 1);
  assert.ok(!fs.existsSync(`${a}.lock`));
});

test("a lock left by a dead process is taken over; one held by a live process with no progress is a one-line error", async () => {
  const home = freshHome();
  const name = `locked-${hash8}.safetensors`;
  routes.set(`/files/${name}`, serveFile(body));
  const dest = join(home, "weights", name);
  fs.mkdirSync(join(home, "weights"));
  const dead = spawn(process.execPath, ["-e", ""]);
  await new Promise((done) => dead.on("close", done));
  fs.writeFileSync(`${dest}.lock`, String(dead.pid));
  assert.equal(await resolveWeights(`${base}/files/${name}`), dest);
  assert.ok(!fs.existsSync(`${dest}.lock`));
  fs.rmSync(dest);
  fs.writeFileSync(`${dest}.lock`, String(process.ppid));
  await assert.rejects(
    resolveWeights(`${base}/files/${name}`, { timeoutMs: 300 }),
    new RegExp(
      `is being downloaded by process ${process.ppid}, with no progress for 300 ms; wait for it, or delete ${dest}\\.lock if that process is gone$`,
    ),
  );
  assert.ok(fs.existsSync(`${dest}.lock`), "a live process's lock is left alone");
});

test("a lock held by a live process is waited for; then its download is used, with no request", async () => {
  const home = freshHome();
  const name = `waited-${hash8}.safetensors`;
  routes.set(`/files/${name}`, serveFile(body));
  const dest = join(home, "weights", name);
  fs.mkdirSync(join(home, "weights"));
  fs.writeFileSync(`${dest}.lock`, String(process.ppid));
  setTimeout(() => {
    fs.writeFileSync(dest, body); // the other process finishes ...
    fs.rmSync(`${dest}.lock`); // ... and lets go
  }, 400);
  const lines: string[] = [];
  assert.equal(await resolveWeights(`${base}/files/${name}`, { timeoutMs: 5000, log: (l) => lines.push(l) }), dest);
  assert.equal(requestsTo(`/files/${name}`).length, 0);
  assert.deepEqual(lines.slice(0, 1), [`waiting for process ${process.ppid}, which is downloading ${dest}`]);
  assert.equal(lines.filter((l) => l.startsWith("waiting")).length, 1, "one line, not one per poll");
  assert.ok(!fs.existsSync(`${dest}.lock`));
  // A lock let go without a file (the other process failed): this one downloads it.
  fs.rmSync(dest);
  fs.writeFileSync(`${dest}.lock`, String(process.ppid));
  setTimeout(() => fs.rmSync(`${dest}.lock`), 300);
  assert.equal(await resolveWeights(`${base}/files/${name}`, { timeoutMs: 5000 }), dest);
  assert.equal(requestsTo(`/files/${name}`).length, 1);
  assert.ok(fs.readFileSync(dest).equals(body));
  // A stale lock holding no pid at all is taken over too, and no temp file is left behind.
  fs.rmSync(dest);
  fs.writeFileSync(`${dest}.lock`, "");
  assert.equal(await resolveWeights(`${base}/files/${name}`), dest);
  assert.deepEqual(fs.readdirSync(join(home, "weights")).sort(), [name, `${name}.verified`]);
});

test("URLs without a hash prefix are cached per URL: two model.pth never share a file; an HTML page is refused", async () => {
  const home = freshHome();
  const other = Buffer.from(body);
  other[other.length - 1] ^= 1; // same format, other bytes
  routes.set("/a/model.pth", serveFile(body));
  routes.set("/b/model.pth", serveFile(other));
  routes.set("/c/model.pth", (_req, res) =>
    res.writeHead(200, { "content-type": "text/html" }).end("<!DOCTYPE html><html><body>Sign in</body></html>"),
  );
  const [a, b] = [`${base}/a/model.pth`, `${base}/b/model.pth`];
  const fa = await resolveWeights(a);
  const fb = await resolveWeights(b);
  const sub = (u: string) => `url-${createHash("sha256").update(u).digest("hex").slice(0, 12)}`;
  assert.equal(fa, join(home, "weights", sub(a), "model.pth"));
  assert.equal(fb, join(home, "weights", sub(b), "model.pth"));
  assert.deepEqual([cachePath(a), cachePath(b)], [fa, fb]);
  assert.ok(fs.readFileSync(fa).equals(body));
  assert.ok(fs.readFileSync(fb).equals(other));
  assert.deepEqual(cachedFiles(), [fa, fb].sort());
  assert.equal(await resolveWeights(a), fa);
  assert.equal(requestsTo("/a/model.pth").length, 1);
  // A name with a hash prefix keeps torch.hub's layout.
  assert.equal(cachePath(`${base}/files/${good}`), join(home, "weights", good));

  const c = `${base}/c/model.pth`;
  await assert.rejects(resolveWeights(c), (err: Error) => {
    assert.equal(err.message, `downloaded ${c} is not a weights file (an HTML page?); deleted it`);
    return true;
  });
  assert.deepEqual(fs.readdirSync(join(home, "weights", sub(c))), [], "neither the page nor a partial file nor a lock is kept");
});

test("a name like finetuned-2024.pth promises no hash (8+ hex digits needed) and downloads fine", async () => {
  const home = freshHome();
  routes.set("/files/finetuned-2024.pth", serveFile(body));
  const url = `${base}/files/finetuned-2024.pth`;
  assert.equal(HASH_REGEX.exec("finetuned-2024.pth"), null);
  assert.equal(HASH_REGEX.exec("vgg16-397923af.pth")?.[1], "397923af");
  const got = await resolveWeights(url);
  assert.ok(got.startsWith(join(home, "weights", "url-")) && got.endsWith("/finetuned-2024.pth"), got);
  assert.ok(fs.readFileSync(got).equals(body));
  assert.equal((await verifyFile(got)).ok, true);
});

test("an invalid redirect Location is a one-line error naming the URL, and the lock is released", async () => {
  const home = freshHome();
  const name = `badredirect-${hash8}.safetensors`;
  routes.set(`/files/${name}`, (_req, res) => res.writeHead(302, { location: "http://127.0.0.1:99999/x" }).end());
  const url = `${base}/files/${name}`;
  await assert.rejects(resolveWeights(url), (err: Error) => {
    assert.equal(err.name, "VggError");
    assert.equal(err.message, `${url} redirects to an invalid URL: http://127.0.0.1:99999/x`);
    return true;
  });
  assert.deepEqual(fs.readdirSync(join(home, "weights")), [], "no lock file left behind");
});

test("--force replaces the cached copy only once the new download is verified", async () => {
  const home = freshHome();
  const name = `forced-${hash8}.safetensors`;
  let serve = serveFile(body);
  routes.set(`/files/${name}`, (req, res) => serve(req, res));
  const url = `${base}/files/${name}`;
  const dest = await resolveWeights(url);
  assert.equal(dest, join(home, "weights", name));
  // The server now sends wrong bytes, or stalls: the good copy stays, usable and verified.
  const wrong = Buffer.from(body);
  wrong[wrong.length - 1] ^= 1;
  serve = serveFile(wrong);
  await assert.rejects(resolveWeights(url, { force: true }), /its name promises; deleted it/);
  assert.ok(fs.readFileSync(dest).equals(body));
  assert.equal((await verifyFile(dest)).ok, true);
  serve = (_req, res) => {
    res.writeHead(200, { "content-length": body.length });
    res.write(body.subarray(0, 1000));
  };
  await assert.rejects(resolveWeights(url, { force: true, timeoutMs: 300 }), /no data from/);
  assert.ok(fs.readFileSync(dest).equals(body));
  assert.equal(await resolveWeights(url), dest);
  // With a good server, --force downloads again (from the start, not resuming the stale partial) and replaces it.
  serve = serveFile(body);
  const n = requestsTo(`/files/${name}`).length;
  assert.equal(await resolveWeights(url, { force: true }), dest);
  assert.equal(requestsTo(`/files/${name}`).length, n + 1);
  assert.equal(requestsTo(`/files/${name}`)[n].range, undefined);
  assert.ok(fs.readFileSync(dest).equals(body));
  assert.ok(!fs.existsSync(partialPath(dest)));

  // A URL without a hash: an HTML page answered to --force leaves the good copy too.
  routes.set("/d/model.pth", (req, res) => serve(req, res));
  const d = `${base}/d/model.pth`;
  const fd = await resolveWeights(d);
  serve = (_req, res) => res.writeHead(200).end("<html></html>");
  await assert.rejects(resolveWeights(d, { force: true }), /is not a weights file/);
  assert.ok(fs.readFileSync(fd).equals(body));
  assert.equal(await resolveWeights(d), fd);
});

// ---------------------------------------------------------------------------------------------------------------
// The CLI (the real binary; asynchronous so this process's server can answer it)

function vggEnv(args: string[], env: Record<string, string>): Promise<RunResult> {
  return new Promise((done, fail) => {
    const p = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...process.env, ...env }, timeout: 60_000 });
    let stdout = "";
    let stderr = "";
    p.stdout.setEncoding("utf8").on("data", (s: string) => (stdout += s));
    p.stderr.setEncoding("utf8").on("data", (s: string) => (stderr += s));
    p.on("error", fail);
    p.on("close", (status) => done({ status, stdout, stderr }));
  });
}

test("vgg weights list, list --json, path", async () => {
  const home = fs.mkdtempSync(join(dir, "cli-"));
  const env = { VGG_HOME: home };
  const [list, json, path] = await Promise.all([
    vggEnv(["weights", "list"], env),
    vggEnv(["weights", "list", "--json"], env),
    vggEnv(["weights", "path", "vgg16"], env),
  ]);
  assert.equal(list.status, 0, list.stderr);
  assert.match(list.stdout, /^name\s+arch\s+top-1\s+top-5\s+MB\s+cached$/m);
  assert.match(list.stdout, /^vgg16\.IMAGENET1K_V1\s+vgg16\s+71\.592\s+90\.382\s+527\.8\s+no$/m);
  assert.match(list.stdout, /^vgg16\.IMAGENET1K_FEATURES\s+vgg16\s+-\s+-\s+527\.8\s+no$/m);
  const rows = JSON.parse(json.stdout) as { name: string; cached: boolean; path: string; url: string }[];
  assert.equal(rows.length, 9);
  assert.ok(rows.every((r) => !r.cached && r.path.startsWith(join(home, "weights"))));
  assert.equal(rows[4].url, "https://download.pytorch.org/models/vgg16-397923af.pth");
  assert.equal(path.stdout.trim(), join(home, "weights", "vgg16-397923af.pth"));
});

test("vgg weights pull URL, then verify: ok, then bad after corruption (exit 1, one line)", async () => {
  const home = fs.mkdtempSync(join(dir, "cli-"));
  const env = { VGG_HOME: home };
  const pull = await vggEnv(["weights", "pull", `${base}/files/${good}`], env);
  assert.equal(pull.status, 0, pull.stderr);
  const dest = join(home, "weights", good);
  assert.equal(pull.stdout.trim(), dest);
  assert.equal(pull.stderr, "");
  const ok = await vggEnv(["weights", "verify"], env);
  assert.equal(ok.status, 0, ok.stderr);
  assert.match(ok.stdout, new RegExp(`^${good}\\s+0\\.\\d+ MB\\s+ok\\s+${hash8}`, "m"));
  const fd = fs.openSync(dest, "r+");
  fs.writeSync(fd, Buffer.from([0xff]), 0, 1, 500);
  fs.closeSync(fd);
  const bad = await vggEnv(["weights", "verify", good], env);
  assertCleanError(bad, /^vgg: 1 of 1 weights files failed verification: delete them or run `vgg weights pull --force NAME`$/);
  assert.match(bad.stdout, /BAD {2}SHA-256 [0-9a-f]{12}\.\.\., its name says/);
  // The fix the message names: pull --force fetches the file again, and it verifies.
  const again = await vggEnv(["weights", "pull", "--force", `${base}/files/${good}`], env);
  assert.equal(again.status, 0, again.stderr);
  assert.equal((await vggEnv(["weights", "verify", good], env)).status, 0);
  const notThere = await vggEnv(["weights", "verify", "vgg19"], env);
  assertCleanError(notThere, /failed verification/);
  assert.match(notThere.stdout, /vgg19-dcbb9e9d\.pth\s+-\s+BAD {2}not downloaded/);
});

test("vgg weights pull: every error is one line naming the file or URL, exit non-zero", async () => {
  const home = fs.mkdtempSync(join(dir, "cli-"));
  const port = await closedPort();
  routes.set("/mirror/vgg16-397923af.pth", serveFile(body));
  const env = { VGG_HOME: home };
  const [notFound, noWeights, unknown, offline, mirror, noArch] = await Promise.all([
    vggEnv(["weights", "pull", `${base}/files/gone-12345678.pth`], env),
    vggEnv(["weights", "pull", "vgg11_lrn"], env),
    vggEnv(["weights", "pull", "vgg16.IMAGENET1K_V9"], env),
    vggEnv(["weights", "pull", `http://127.0.0.1:${port}/x/${good}`], env),
    vggEnv(["weights", "pull", "vgg16"], { ...env, VGG_WEIGHTS_MIRROR: `${base}/mirror` }),
    vggEnv(["weights", "pull", "imagenet"], env),
  ]);
  assertCleanError(notFound, new RegExp(`^vgg: HTTP 404 Not Found from ${base}/files/gone-12345678\\.pth$`));
  assertCleanError(
    noWeights,
    /^vgg: vgg11_lrn has no published ImageNet weights \(torchvision publishes weights for vgg11, vgg11_bn, vgg13, vgg13_bn, vgg16, vgg16_bn, vgg19, vgg19_bn\)$/,
  );
  assertCleanError(unknown, /^vgg: unknown weights 'vgg16.IMAGENET1K_V9'/);
  assertCleanError(
    offline,
    new RegExp(
      `cannot download http://127.0.0.1:${port}/x/${good} \\(connection refused, ECONNREFUSED\\); offline\\? put the file at ${join(home, "weights", good)} by hand$`,
    ),
  );
  assertCleanError(mirror, new RegExp(`^vgg: ${base}/mirror/vgg16-397923af.pth serves ${body.length} bytes .*not the published file$`));
  assertCleanError(noArch, /need an arch/);
  assert.deepEqual(fs.existsSync(join(home, "weights")) ? fs.readdirSync(join(home, "weights")) : [], []);
});
