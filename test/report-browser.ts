/**
 * Opens a report.html in Debian's Chromium from file:// with every non-file, non-data request blocked, waits for
 * its charts, and reports what a test needs to check: canvases' inked pixels, images' decoded widths, blocked
 * requests and page errors. Saves a full-page screenshot.
 */
import assert from "node:assert/strict";
import { type ChildProcessWithoutNullStreams, spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import { dirname, join } from "node:path";
import { chromium } from "playwright-core";
import { BIN, ROOT } from "./helpers.js";

export const CHROMIUM = "/usr/bin/chromium";
export const chromiumSkip = fs.existsSync(CHROMIUM) ? false : `needs ${CHROMIUM} (apt-get install -y chromium; CI installs it)`;

/** Starts `vgg serve-demo ARGS --port 0`; resolves with the base URL it prints, once it prints it. */
export function startServeDemo(args: string[], timeoutMs = 30_000): Promise<{ url: string; proc: ChildProcessWithoutNullStreams }> {
  const proc = spawn(process.execPath, [BIN, "serve-demo", ...args, "--port", "0"], { cwd: ROOT });
  let out = "";
  let err = "";
  return new Promise((done, fail) => {
    const timer = setTimeout(() => fail(new Error(`serve-demo printed no URL in ${timeoutMs / 1000} s: ${out}${err}`)), timeoutMs);
    proc.stderr.setEncoding("utf8").on("data", (s: string) => (err += s));
    proc.stdout.setEncoding("utf8").on("data", (s: string) => {
      out += s;
      const m = /serving .* at (http:\/\/127\.0\.0\.1:\d+\/)/.exec(out);
      if (m) {
        clearTimeout(timer);
        done({ url: m[1], proc });
      }
    });
    proc.on("exit", (code) => fail(new Error(`serve-demo exited (${code}): ${err}`)));
  });
}

/** Builds the browser pages (dist/web) unless they are: npm test builds them first, a single test file may not. */
export function ensureWebBuilt(): void {
  if (fs.existsSync(join(ROOT, "dist", "web", "train.html"))) return;
  const b = spawnSync(process.execPath, [join(ROOT, "scripts", "build-web.mjs")], { cwd: ROOT, encoding: "utf8" });
  assert.equal(b.status, 0, `npm run build:web failed: ${b.stderr}`);
}

export interface PageCheck {
  canvases: { id: string; n: number; w: number; h: number }[];
  images: number[];
  blocked: string[];
  errors: string[];
}

export async function openReport(file: string, charts: number, screenshot: string): Promise<PageCheck> {
  fs.mkdirSync(dirname(screenshot), { recursive: true });
  const ctx = await chromium.launchPersistentContext(fs.mkdtempSync(join(dirname(file), "chromium-")), {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    viewport: { width: 1280, height: 900 },
  });
  try {
    const blocked: string[] = [];
    const errors: string[] = [];
    await ctx.route("**", (route) => {
      const u = route.request().url();
      if (/^(file|data):/.test(u)) return route.continue();
      blocked.push(u);
      return route.abort();
    });
    const page = ctx.pages()[0] ?? (await ctx.newPage());
    page.on("console", (m) => {
      if (m.type() === "error") errors.push(m.text());
    });
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(`file://${file}`);
    await page.waitForFunction(`window.__chartsRendered === ${charts}`, undefined, { timeout: 20_000 });
    // (Browser-side code as strings: the tests compile without the DOM's types.)
    const canvases = (await page.evaluate(`Array.from(document.querySelectorAll("canvas")).map((c) => {
      const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) n++;
      return { id: c.id, n, w: c.width, h: c.height };
    })`)) as PageCheck["canvases"];
    const images = (await page.evaluate(`Array.from(document.images).map((i) => i.complete && i.naturalWidth)`)) as number[];
    await page.evaluate(`document.querySelectorAll("details").forEach((d, i) => { d.open = i < 2; })`);
    await page.screenshot({ path: screenshot, fullPage: true });
    return { canvases, images, blocked, errors };
  } finally {
    await ctx.close();
  }
}
