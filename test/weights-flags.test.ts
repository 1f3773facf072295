/**
 * Weights by name or URL wherever a command takes weights: `--weights URL|imagenet` (predict, features) and
 * `vgg train --init URL`, against a loopback server; features-only weights refused for logits.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { after, before, test } from "node:test";
import sharp from "sharp";
import { initWeights } from "../src/weights/init.js";
import { writeSafetensors } from "../src/weights/safetensors.js";
import { buildModel } from "../src/zoo/model.js";
import { assertCleanError, tmp, toyData, vggAsync } from "./helpers.js";

const MODEL = ["--arch", "vgg11", "--width-divisor", "16", "--num-classes", "10", "--input-size", "32"];
const dir = tmp();
const home = join(dir, "home");
const files = new Map<string, Buffer>();
let server: http.Server;
let base = "";
const requests: string[] = [];

/** Serves `bytes` under a torch.hub-style name that carries its own SHA-256 prefix. */
function publish(stem: string, bytes: Buffer): string {
  const name = `${stem}-${createHash("sha256").update(bytes).digest("hex").slice(0, 8)}.safetensors`;
  files.set(`/${name}`, bytes);
  return `${base}/${name}`;
}

function weightsBytes(nanHead: boolean): Buffer {
  const sd = initWeights(buildModel("vgg11", { widthDivisor: 16, numClasses: 10, inputSize: 32 }), "torchvision", 3);
  if (nanHead) for (const [k, t] of sd) if (k.startsWith("classifier")) (t.data as Float32Array).fill(Number.NaN);
  const f = join(dir, `w${nanHead ? "-nan" : ""}.safetensors`);
  writeSafetensors(f, sd);
  return readFileSync(f);
}

before(async () => {
  server = http.createServer((req, res) => {
    requests.push(req.url ?? "");
    const b = files.get(req.url ?? "");
    if (!b) return void res.writeHead(404).end();
    res.writeHead(200, { "content-length": b.length }).end(b);
  });
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const px = Buffer.alloc(32 * 32 * 3, 90);
  await sharp(px, { raw: { width: 32, height: 32, channels: 3 } })
    .png()
    .toFile(join(dir, "a.png"));
});
after(() => server.close());

const env = { VGG_HOME: home };

test("--weights URL: downloaded once into VGG_HOME, then used from the cache", async () => {
  const url = publish("tiny", weightsBytes(false));
  const r = await vggAsync(["predict", ...MODEL, "--weights", url, join(dir, "a.png"), "--top", "2"], { env });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /a\.png\n\s+[\d.]+%/);
  const cached = join(home, "weights", url.split("/").pop() as string);
  assert.ok(existsSync(cached));
  files.clear(); // the second run cannot reach the file: the cache must serve it
  const again = await vggAsync(["predict", ...MODEL, "--weights", url, join(dir, "a.png"), "--top", "2"], { env });
  assert.equal(again.status, 0, again.stderr);
  assert.equal(again.stdout, r.stdout);
});

test("vgg train --init URL --num-classes 4: fine-tunes from downloaded weights", async () => {
  const url = publish("tiny-train", weightsBytes(false));
  const data = `npy:${toyData(dir, 16, 11)}`;
  const r = await vggAsync(
    ["train", ...MODEL.slice(0, 4), "--num-classes", "4", "--data", data, "--init", url, "--steps", "1", "--epochs", "1"].concat([
      "--batch-size",
      "8",
      "--val",
      "0",
      "--no-progress",
      "--out",
      join(dir, "ft"),
    ]),
    { env },
  );
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /loaded 20 tensors; re-initialised classifier\.6\.weight \[4, 256\]/);
});

test("features-only weights: refused for logits, fine for conv taps", async () => {
  const url = publish("feat", weightsBytes(true));
  assertCleanError(
    await vggAsync(["predict", ...MODEL, "--weights", url, join(dir, "a.png")], { env }),
    /'classifier\.0\.weight' is all NaN: these are features-only weights/,
  );
  const out = join(dir, "f.safetensors");
  const r = await vggAsync(["features", ...MODEL, "--weights", url, "--tap", "relu2_1", join(dir, "a.png"), "--out", out], { env });
  assert.equal(r.status, 0, r.stderr);
});

test("--weights imagenet: an arch without published weights, and an unreachable mirror, are one-line errors", async () => {
  assertCleanError(await vggAsync(["predict", "--arch", "vgg11_lrn", "--weights", "imagenet", join(dir, "a.png")], { env }), /vgg11_lrn/);
  const dead = { ...env, VGG_WEIGHTS_MIRROR: "http://127.0.0.1:9/models/" };
  // vgg distance is VGG16's without --arch: imagenet means vgg16's weights there.
  assertCleanError(
    await vggAsync(["distance", join(dir, "a.png"), join(dir, "a.png"), "--weights", "imagenet"], { env: dead }),
    /127\.0\.0\.1:9\/models\/vgg16-397923af\.pth/,
  );
  const r = await vggAsync(["predict", "--arch", "vgg16", "--weights", "imagenet", join(dir, "a.png")], { env: dead });
  assertCleanError(r, /127\.0\.0\.1:9\/models\/vgg16-397923af\.pth.*vgg16-397923af\.pth/);
  assert.ok(r.stderr.includes(join(home, "weights", "vgg16-397923af.pth")), r.stderr);
});

test("vgg eval of a bare weights file normalises with the weights' statistics (torchvision's ImageNet), not the data's", async () => {
  const f = join(dir, "bare.safetensors");
  writeFileSync(f, weightsBytes(false));
  const data = `npy:${toyData(dir, 8, 12)};${toyData(dir, 8, 13)}`;
  const r = await vggAsync(["eval", ...MODEL, "--in-channels", "3", "--weights", f, "--data", data, "--json"], { env });
  assert.equal(r.status, 0, r.stderr);
  // 1-channel data with a 3-channel model: ImageNet's statistics averaged over RGB.
  const n = (JSON.parse(r.stdout) as { normalization: { mean: number[]; std: number[] } }).normalization;
  assert.ok(Math.abs(n.mean[0] - 0.449) < 1e-6 && Math.abs(n.std[0] - 0.226) < 1e-6, JSON.stringify(n));
});

test("vgg distance refuses caffe-style weights (vgg16.IMAGENET1K_FEATURES): LPIPS's scaling is torchvision's", async () => {
  // The entry is recognised by its file name; a small vgg16 stands in for the 528 MB file.
  const f = join(dir, "vgg16_features-amdegroot-88682ab5.pth");
  writeSafetensors(f, initWeights(buildModel("vgg16", { widthDivisor: 16 }), "torchvision", 2));
  const a = join(dir, "a.png");
  assertCleanError(
    await vggAsync(["distance", a, a, "--weights", f, "--width-divisor", "16"], { env }),
    /vgg16\.IMAGENET1K_FEATURES expects vgg16-features input/,
  );
});

test("vgg train --init URL: a missing data folder or a bad --freeze fails before anything is downloaded", async () => {
  const url = publish("never", weightsBytes(false));
  const before = requests.length;
  const common = ["train", ...MODEL, "--init", url, "--out", join(dir, "never")];
  assertCleanError(await vggAsync([...common, "--data", `folder:${join(dir, "nope")}`], { env }), /nope: no such directory/);
  assertCleanError(
    await vggAsync([...common, "--data", `npy:${toyData(dir, 8, 14)}`, "--freeze", "relu9_9"], { env }),
    /--freeze: unknown part 'relu9_9'/,
  );
  assert.equal(requests.length, before, requests.slice(before).join(", "));
});
