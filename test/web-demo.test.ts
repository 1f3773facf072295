/**
 * The browser demo end to end: export a small model with a feature tap, serve it with `vgg serve-demo`, open the page
 * in Debian's Chromium (headless, driven by playwright-core), pick an image, and check the page's top-5 against
 * `vgg predict` on the same image and model. Screenshots go to test-output/. Skipped without /usr/bin/chromium.
 */
import assert from "node:assert/strict";
import type { ChildProcessWithoutNullStreams } from "node:child_process";
import * as fs from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import sharp from "sharp";
import { readNpy } from "../src/io/npy.js";
import { ROOT, tmp, vggAsync } from "./helpers.js";
import { CHROMIUM, chromiumSkip, ensureWebBuilt, startServeDemo } from "./report-browser.js";

const skip = chromiumSkip;
const OUT = join(ROOT, "test-output");
/** Chromium on a shared, GPU-less machine: no background traffic, no sandbox (root in CI). */
const BASE_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
/** WebGPU on SwiftShader's CPU Vulkan: slow, but exercises ORT's WebGPU backend without a GPU. */
const WEBGPU_ARGS = [
  "--enable-unsafe-webgpu",
  "--enable-features=Vulkan",
  "--use-vulkan=swiftshader",
  "--use-webgpu-adapter=swiftshader",
  "--use-angle=swiftshader",
];
const CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];
const MODEL_FLAGS = ["--arch", "vgg11_bn", "--width-divisor", "16", "--num-classes", "10", "--head", "compact", "--seed", "3"];

const dir = tmp("vgg-web-");
const image = join(dir, "street.png");
const labels = join(dir, "cifar10.txt");
const model = join(dir, "vgg11_bn-demo.onnx");
const savedInput = join(dir, "input.npy");
let server: ChildProcessWithoutNullStreams | undefined;
let url = "";
/** `vgg predict --top 10`: every class's probability, by index, and the top-1. */
let expected: { top1: string; probs: Map<number, number> };

interface PageTop {
  index: number;
  label: string;
  probability: number;
}

/** A photo-like RGB picture: smooth waves, a disc, a checker and noise. */
async function writePhoto(file: string, w: number, h: number): Promise<void> {
  const b = Buffer.alloc(w * h * 3);
  let s = 4242;
  const rnd = () => {
    s = (Math.imul(s, 1103515245) + 12345) & 0x7fffffff;
    return s / 0x7fffffff;
  };
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 3;
      const disc = Math.hypot(x - 0.55 * w, y - 0.45 * h) < 0.22 * h;
      b[i] = Math.min(255, Math.max(0, 128 + 90 * Math.sin(x / 17) + 30 * rnd()));
      b[i + 1] = disc ? 225 : Math.min(255, Math.floor((y * 200) / h + 30 * rnd()));
      b[i + 2] = ((x >> 4) + (y >> 4)) % 2 ? 200 : 50;
    }
  await sharp(b, { raw: { width: w, height: h, channels: 3 } })
    .png()
    .toFile(file);
}

async function startServer(): Promise<string> {
  const s = await startServeDemo(["--model", model, "--labels", labels]);
  server = s.proc;
  return s.url;
}

before(async () => {
  if (skip) return;
  ensureWebBuilt();
  fs.mkdirSync(OUT, { recursive: true });
  fs.writeFileSync(labels, `${CIFAR10.join("\n")}\n`);
  await writePhoto(image, 400, 300);
  const [exp, pred] = await Promise.all([
    vggAsync(["export", ...MODEL_FLAGS, "--tap", "relu1_1,relu2_1,logits", "--out", model]),
    vggAsync(["predict", ...MODEL_FLAGS, "--labels", labels, "--top", "10", "--json", "--save-input", savedInput, image]),
  ]);
  assert.equal(exp.status, 0, exp.stderr);
  assert.equal(pred.status, 0, pred.stderr);
  const top = (JSON.parse(pred.stdout) as { top: PageTop[] }[])[0].top;
  // The comparison means something only if the top-1 is not a near-tie.
  assert.ok(top[0].probability - top[1].probability > 1e-3, `top-1 is a near-tie: ${JSON.stringify(top.slice(0, 2))}`);
  expected = { top1: top[0].label, probs: new Map(top.map((t) => [t.index, t.probability])) };
  url = await startServer();
});

after(() => {
  if (server && server.exitCode === null) server.kill("SIGTERM");
  fs.rmSync(dir, { recursive: true, force: true });
});

async function launch(extraArgs: string[]): Promise<BrowserContext> {
  return chromium.launchPersistentContext(fs.mkdtempSync(join(dir, "chromium-")), {
    executablePath: CHROMIUM,
    headless: true,
    args: [...BASE_ARGS, ...extraArgs],
    viewport: { width: 1280, height: 760 },
  });
}

/** Opens the page, records every request and console error, waits until the model is loaded. */
async function openDemo(ctx: BrowserContext) {
  const page: Page = ctx.pages()[0] ?? (await ctx.newPage());
  const requests: string[] = [];
  const errors: string[] = [];
  page.on("request", (r) => requests.push(r.url()));
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(m.text());
  });
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(url);
  await page.waitForSelector('body[data-state="ready"], body[data-state="error"]', { timeout: 60_000 });
  assert.equal(await page.getAttribute("body", "data-state"), "ready", (await page.textContent("#status")) ?? "");
  return { page, requests, errors };
}

async function classify(page: Page): Promise<PageTop[]> {
  await page.setInputFiles("#file", image);
  await page.waitForSelector('body[data-state="done"], body[data-state="error"]', { timeout: 60_000 });
  assert.equal(await page.getAttribute("body", "data-state"), "done", (await page.textContent("#status")) ?? "");
  return page.$$eval("#top li", (lis) =>
    lis.map((li) => ({
      index: Number(li.getAttribute("data-index")),
      label: li.getAttribute("data-label") ?? "",
      probability: Number(li.getAttribute("data-probability")),
    })),
  );
}

function checkTop(top: PageTop[]): void {
  assert.equal(top.length, 5);
  assert.equal(top[0].label, expected.top1, `page top-1 ${top[0].label}, vgg predict ${expected.top1}`);
  for (const t of top) {
    assert.equal(t.label, CIFAR10[t.index]);
    const p = expected.probs.get(t.index) ?? Number.NaN;
    assert.ok(Math.abs(t.probability - p) < 1e-4, `class ${t.index}: page ${t.probability}, vgg predict ${p}`);
  }
}

test("browser demo (WASM): same top-1 as vgg predict, tap grids, nothing from other origins", { skip, timeout: 90_000 }, async () => {
  const ctx = await launch(["--disable-gpu"]);
  try {
    const { page, requests, errors } = await openDemo(ctx);
    // (Browser-side expressions as strings: the tests compile without the DOM's types.)
    const env = (await page.evaluate(
      "({ isolated: crossOriginIsolated, cores: navigator.hardwareConcurrency, backend: window.vggDemo?.backend, threads: window.vggDemo?.threads })",
    )) as { isolated: boolean; cores: number; backend: string; threads: number };
    assert.equal(env.isolated, true, "COOP/COEP should make the page cross-origin isolated");
    assert.equal(env.backend, "wasm");
    assert.equal(env.threads, Math.min(4, env.cores), "threaded WASM when cross-origin isolated");
    assert.match((await page.textContent("#engine")) ?? "", /^WASM, \d+ threads? · onnxruntime-web 1\.30\.0$/);
    assert.match((await page.textContent("#model-name")) ?? "", /^vgg11_bn \(vgg11_bn-demo\.onnx\)$/);
    assert.match((await page.textContent("#model-size")) ?? "", /^\d+(\.\d)? (MiB|KiB)$/);

    checkTop(await classify(page));
    assert.match((await page.textContent("#timing")) ?? "", /^[\d.]+ ms per image on WASM/);
    // The page's network input is vgg predict's, value for value (a PNG decodes the same; the rest is shared code).
    const x = (await page.evaluate("Array.from(window.vggDemo.lastInput)")) as number[];
    const want = readNpy(savedInput).data as Float32Array;
    assert.equal(x.length, want.length);
    let diff = 0;
    for (let i = 0; i < x.length; i++) diff = Math.max(diff, Math.abs(x[i] - want[i]));
    assert.equal(diff, 0, "the page's preprocessed input differs from vgg predict's");
    assert.match((await page.textContent("#status")) ?? "", new RegExp(`^${expected.top1}: [\\d.]+%$`));

    // The tap grids: relu1_1 is [4, 224, 224] (2 x 2 cells), relu2_1 [8, 112, 112] (3 x 3), 1-pixel gaps.
    const tapWidth = async () => Number(await page.getAttribute("#tap", "width"));
    assert.equal(await tapWidth(), 2 * 224 + 1);
    await page.selectOption("#tap-select", "relu2_1");
    assert.equal(await tapWidth(), 3 * 112 + 2);
    await page.selectOption("#tap-select", "relu1_1");
    assert.deepEqual([await page.getAttribute("#input", "width"), await page.getAttribute("#input", "height")], ["224", "224"]);

    await page.screenshot({ path: join(OUT, "web-demo.png"), fullPage: true });
    const origin = new URL(url).origin;
    const foreign = requests.filter((r) => !r.startsWith(`${origin}/`) && !/^(data|blob):/.test(r));
    assert.deepEqual(foreign, [], "the page fetched from another origin");
    assert.ok(requests.some((r) => r.endsWith("/ort/ort-wasm-simd-threaded.jsep.wasm")));
    assert.deepEqual(errors, []);
  } finally {
    await ctx.close();
  }
});

test("browser demo (WebGPU on SwiftShader): same results as WASM", { skip, timeout: 90_000 }, async (t) => {
  const ctx = await launch(WEBGPU_ARGS);
  try {
    const { page, errors } = await openDemo(ctx);
    const backend = await page.getAttribute("#engine", "data-backend");
    // WebGPU needs an adapter (SwiftShader here); builds without one fall back to WASM, which the test above covers.
    if (backend !== "webgpu") return t.skip(`this Chromium offers no WebGPU adapter (${await page.getAttribute("#engine", "title")})`);
    checkTop(await classify(page));
    assert.match((await page.textContent("#timing")) ?? "", /^[\d.]+ ms per image on WebGPU/);
    await page.screenshot({ path: join(OUT, "web-demo-webgpu.png"), fullPage: true });
    assert.deepEqual(errors, []);
  } finally {
    await ctx.close();
  }
});

test("an int8 export beside the model (--int8): the page runs it when asked (?precision=int8); a small model keeps its fp32 file", {
  skip,
  timeout: 180_000,
}, async () => {
  const calib = join(dir, "calib");
  fs.mkdirSync(calib, { recursive: true });
  fs.copyFileSync(image, join(calib, "street.png"));
  const int8 = join(dir, "vgg11_bn-demo-int8.onnx");
  const exp = await vggAsync([
    "export",
    ...MODEL_FLAGS,
    "--tap",
    "relu1_1,relu2_1,logits",
    "--precision",
    "int8",
    "--calibrate",
    calib,
    "--out",
    int8,
  ]);
  assert.equal(exp.status, 0, exp.stderr);
  // A file that is not an int8 export of the model is refused in one line.
  const bad = await vggAsync(["serve-demo", "--model", model, "--int8", model, "--port", "0"]);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /vgg11_bn-demo\.onnx: is not an int8 export/);

  const { url: base, proc: p } = await startServeDemo(["--model", model, "--int8", int8, "--labels", labels]);
  const ctx = await launch(["--disable-gpu"]);
  try {
    const page = ctx.pages()[0] ?? (await ctx.newPage());
    const open = async (query: string) => {
      await page.goto(`${base}${query}`);
      await page.waitForSelector('body[data-state="ready"], body[data-state="error"]', { timeout: 60_000 });
      assert.equal(await page.getAttribute("body", "data-state"), "ready", (await page.textContent("#status")) ?? "");
      return (await page.evaluate("window.vggDemo.precision")) as string;
    };
    assert.equal(await open("?precision=int8"), "int8");
    assert.match((await page.textContent("#model-size")) ?? "", /\(int8 export; fp32 [\d.]+ (MiB|KiB)\)$/);
    const top = await classify(page);
    assert.equal(top.length, 5);
    for (const t of top) assert.equal(t.label, CIFAR10[t.index]);
    // The toy is small: without ?precision the page keeps the fp32 file (the int8 one is for models over 256 MiB).
    assert.equal(await open(""), "fp32");
  } finally {
    await ctx.close();
    p.kill("SIGTERM");
  }
});
