/** `vgg weights list|pull|verify|path`: torchvision's published weights and the local cache ($VGG_HOME/weights). */
import * as fs from "node:fs";
import * as path from "node:path";
import type { Command } from "commander";
import { VggError } from "../errors.js";
import {
  cachedFiles,
  cachePath,
  entryFor,
  entryUrl,
  fmtMiB,
  isCached,
  resolveWeights,
  type VerifyResult,
  verifyFile,
  weightsDir,
} from "../weights/hub.js";
import { fmtAcc, PRETRAINED, type PretrainedEntry } from "../weights/pretrained.js";
import { archSpec } from "../zoo/configs.js";
import { table } from "./table.js";

/** NAME, ARCH (its imagenet weights) or URL -> what to fetch. */
function target(spec: string): PretrainedEntry | string {
  if (/^https?:\/\//i.test(spec)) return spec;
  if (archSpec(spec)) return entryFor(spec, "imagenet");
  return entryFor(undefined, spec);
}

/** Progress lines go to a terminal only: a script or a log keeps stdout's paths and stderr's one-line errors. */
function log(): ((line: string) => void) | undefined {
  return process.stderr.isTTY ? (line) => console.error(line) : undefined;
}

function list(o: { json?: boolean }): void {
  const rows = PRETRAINED.map((e) => ({ ...e, url: entryUrl(e), cached: isCached(e), path: cachePath(e) }));
  if (o.json) {
    console.log(JSON.stringify(rows));
    return;
  }
  console.log(
    table(
      ["name", "arch", "top-1", "top-5", "MB", "cached"],
      rows.map((r) => [r.name, r.arch, fmtAcc(r.top1), fmtAcc(r.top5), r.fileSizeMiB.toFixed(1), r.cached ? "yes" : "no"]),
    ),
  );
  console.log(`cache: ${weightsDir()} (set VGG_HOME to move it)`);
}

async function pull(specs: string[], o: { force?: boolean }): Promise<void> {
  // Check every name before the first download starts, so a typo in the third name does not wait 500 MB.
  const targets = specs.map(target);
  for (const t of targets) {
    const spec = typeof t === "string" ? t : t.name;
    console.log(await resolveWeights(spec, { force: o.force, log: log() }));
  }
}

/** A cache file named by entry, arch, URL or file name. */
function cacheFileOf(spec: string): string {
  const inCache = path.join(weightsDir(), path.basename(spec));
  if (!/^https?:\/\//i.test(spec) && path.basename(spec) === spec && cachedFiles().includes(inCache)) return inCache;
  return cachePath(target(spec));
}

async function verify(specs: string[]): Promise<void> {
  const files = specs.length ? specs.map(cacheFileOf) : cachedFiles();
  if (files.length === 0) {
    console.log(`no weights in ${weightsDir()}`);
    return;
  }
  const present = new Set(cachedFiles());
  const results: VerifyResult[] = [];
  for (const f of files) {
    const r: VerifyResult = present.has(f)
      ? await verifyFile(f)
      : { file: f, ok: false, sha256: "", against: "none", why: "not downloaded (vgg weights pull)" };
    results.push(r);
    const what = r.ok ? (r.against === "none" ? "ok (nothing to compare with)" : `ok  ${r.sha256.slice(0, 16)}`) : `BAD  ${r.why}`;
    console.log(`${path.basename(f)}  ${fmtSize(r)}  ${what}`);
  }
  const bad = results.filter((r) => !r.ok);
  if (bad.length) {
    throw new VggError(
      `${bad.length} of ${results.length} weights files failed verification: delete them or run \`vgg weights pull --force NAME\``,
    );
  }
}

function fmtSize(r: VerifyResult): string {
  const st = r.sha256 ? fs.statSync(r.file, { throwIfNoEntry: false }) : undefined;
  return st ? `${fmtMiB(st.size)} MB` : "-";
}

export function register(program: Command): void {
  const w = program
    .command("weights")
    .description("torchvision's published VGG weights: list them, download them into $VGG_HOME/weights, verify the cache");
  w.command("list")
    .description("the published weights: ImageNet top-1/top-5 (%), size, whether cached")
    .option("--json", "print JSON")
    .action(list);
  w.command("pull")
    .description("download weights into the cache (or check the cached copy); prints each file's path")
    .argument("<name...>", "an entry (vgg16.IMAGENET1K_V1), an arch (its imagenet weights) or an http(s) URL")
    .option("--force", "drop the cached copy and download again")
    .action(pull);
  w.command("verify")
    .description("re-hash cached weights in full against the hash in their names; exit 1 if any is bad")
    .argument("[name...]", "entries, archs, URLs or cached file names (default: every cached file)")
    .action(verify);
  w.command("path")
    .description("where the cache keeps (or would keep) these weights: to place a file by hand on an offline machine")
    .argument("<name>", "an entry, an arch or an http(s) URL")
    .action((spec: string) => console.log(cachePath(target(spec))));
}
