/**
 * Weights by name or URL, as torch.hub and timm fetch them: `imagenet` (the arch's torchvision weights), an entry
 * of pretrained.json (`vgg16.IMAGENET1K_FEATURES`), or an http(s) URL, each downloaded once into
 * `$VGG_HOME/weights/` (default ~/.cache/vgg-onnx) and checked against the SHA-256 prefix in its file name
 * (torch.hub's `-<hex>.` rule).
 *
 * What torch.hub does not, and why:
 * - A download streams into `<file>.partial` and is renamed only once complete and verified, so a cut or wrong
 *   download never sits in the cache under the final name (torch.hub's "invalid hash value" on truncated files,
 *   vision#353). The next run resumes a cut download with an HTTP Range request, re-hashing the bytes on disk first.
 * - A cached file is checked again on every use, not only at download time. Its size, mtime and SHA-256 are
 *   remembered in `<file>.verified`, so only a file that changed since is re-hashed (528 MB, about a second).
 * - A corrupted cached file is reported, not silently fetched again: half a gigabyte on a metered or air-gapped
 *   machine should be the user's call, a file placed by hand should not be clobbered, and a disk that corrupts
 *   files is worth knowing about. The message says to delete it or run `vgg weights pull --force`.
 * - Offline, the message names the URL and the exact path to place the file at by hand; VGG_WEIGHTS_MIRROR
 *   replaces https://download.pytorch.org/models/ for the table's entries.
 * - A URL whose file name carries a hash prefix is cached under that name, as torch.hub does (the hash makes a mix-up
 *   detectable); any other URL's file goes into a folder of its own, `url-<SHA-256 of the URL, 12 hex>/<name>`, so
 *   two URLs ending in `model.pth` never share a cache file. Such a file is checked only against the SHA-256 recorded
 *   when it was downloaded, and only a file that looks like weights (not an HTML page) is kept.
 * - Another process downloading the same file is waited for (its lock file), not raced or refused.
 * - `--force` downloads into the partial file and replaces the cached copy only once the new one is verified.
 */
import { createHash, type Hash } from "node:crypto";
import * as fs from "node:fs";
import * as http from "node:http";
import * as https from "node:https";
import { homedir } from "node:os";
import * as path from "node:path";
import { pipeline } from "node:stream/promises";
import { shown, VggError } from "../errors.js";
import { fsError, syncDir, syncFile, writeTextAtomic } from "../io/atomic.js";
import { detectWeightsFormat } from "./index.js";
import { archsWithWeights, defaultEntry, PRETRAINED, type PretrainedEntry, pretrainedEntry } from "./pretrained.js";

/**
 * torch.hub's HASH_REGEX, but with at least 8 hex digits (torchvision's names all have 8): torch.hub's `*` makes
 * `finetuned-2024.pth` promise a hash `2024`, and deletes its correct download.
 */
export const HASH_REGEX = /-([a-f0-9]{8,})\./;
const MAX_REDIRECTS = 5;
const MIB = 1024 * 1024;

export interface ResolveOptions {
  /** The model's arch: needed for `imagenet`, and checked against an entry name's arch. */
  arch?: string;
  /** Where to say what is happening (downloading, resuming, re-checking); nothing when absent. */
  log?: (line: string) => void;
  /** A progress bar on stderr; default: when stderr is a terminal. */
  progress?: boolean;
  /** A download with no bytes for this long fails (the partial file is kept); default VGG_DOWNLOAD_TIMEOUT_MS or 30 s. */
  timeoutMs?: number;
  /** Download again (dropping any partial download); the cached copy is replaced only once the new one is verified. */
  force?: boolean;
  /** Tests only: a table in place of torchvision's (whose real hashes no test file can match). */
  table?: readonly PretrainedEntry[];
}

/** `$VGG_HOME`, default ~/.cache/vgg-onnx. */
export function vggHome(): string {
  return process.env.VGG_HOME || path.join(homedir(), ".cache", "vgg-onnx");
}

/** The weights cache: `$VGG_HOME/weights`. */
export function weightsDir(): string {
  return path.join(vggHome(), "weights");
}

function isUrl(spec: string): boolean {
  return /^https?:\/\//i.test(spec);
}

/** True for what resolveWeights fetches rather than reads: `imagenet`, an entry name (`vgg16.IMAGENET1K_V1`), a URL. */
export function isWeightsRef(spec: string): boolean {
  return /^imagenet$/i.test(spec) || isUrl(spec) || /^vgg\w*\.imagenet\w*$/i.test(spec);
}

/** The SHA-256 prefix a file name promises (torch.hub's rule), or undefined. */
export function hashPrefixOf(fileName: string): string | undefined {
  return HASH_REGEX.exec(fileName)?.[1] || undefined;
}

/** The file name a URL is cached under: its last path segment, with anything unusual in a file name replaced. */
export function urlFileName(url: string): string {
  let last: string;
  try {
    last = new URL(url).pathname.split("/").pop() ?? "";
  } catch {
    throw new VggError(`not a valid URL: ${shown(url)}`);
  }
  try {
    last = decodeURIComponent(last);
  } catch {
    // keep it percent-encoded; the replacement below makes it a safe name either way
  }
  const name = last.replace(/[^A-Za-z0-9._+-]/g, "_");
  if (!name || /^\.*$/.test(name)) throw new VggError(`URL has no file name to cache the weights under: ${shown(url)}`);
  return name;
}

/**
 * Where a URL's file goes in the cache, relative to weightsDir(): its file name when that carries a hash prefix
 * (torch.hub's layout), else `url-<12 hex of the URL's SHA-256>/<name>`.
 */
export function urlCacheFile(url: string): string {
  const name = urlFileName(url);
  if (hashPrefixOf(name)) return name;
  return path.join(`url-${createHash("sha256").update(url).digest("hex").slice(0, 12)}`, name);
}

/** The entry `spec` names for `arch`: `imagenet` is the arch's default, else a full entry name. */
export function entryFor(arch: string | undefined, spec: string, table: readonly PretrainedEntry[] = PRETRAINED): PretrainedEntry {
  const published = archsWithWeights(table).join(", ");
  if (/^imagenet$/i.test(spec)) {
    if (!arch) throw new VggError(`weights 'imagenet' need an arch (--arch NAME); torchvision publishes weights for ${published}`);
    const e = defaultEntry(arch, table);
    if (!e) throw new VggError(`${shown(arch)} has no published ImageNet weights (torchvision publishes weights for ${published})`);
    return e;
  }
  const e = pretrainedEntry(spec, table);
  if (!e) throw new VggError(`unknown weights '${shown(spec)}' (known: imagenet, ${table.map((x) => x.name).join(", ")})`);
  if (arch && e.arch !== arch) {
    throw new VggError(`weights ${e.name} are for ${e.arch}, not ${shown(arch)} (wrong arch/weights pairing)`);
  }
  return e;
}

/** Where an entry is downloaded from: its torchvision URL, or the same file under VGG_WEIGHTS_MIRROR. */
export function entryUrl(entry: PretrainedEntry): string {
  const mirror = process.env.VGG_WEIGHTS_MIRROR;
  if (!mirror) return entry.url;
  if (!isUrl(mirror)) throw new VggError(`VGG_WEIGHTS_MIRROR must be an http(s):// URL, got '${shown(mirror)}'`);
  return `${mirror.replace(/\/+$/, "")}/${entry.file}`;
}

/** The cache path of an entry, an entry name or a URL (whether or not it is there yet). */
export function cachePath(entryOrUrl: PretrainedEntry | string, table: readonly PretrainedEntry[] = PRETRAINED): string {
  if (typeof entryOrUrl !== "string") return path.join(weightsDir(), entryOrUrl.file);
  if (isUrl(entryOrUrl)) return path.join(weightsDir(), urlCacheFile(entryOrUrl));
  return path.join(weightsDir(), entryFor(undefined, entryOrUrl, table).file);
}

/** True when the entry's file is in the cache (not checked; see verifyFile). */
export function isCached(entry: PretrainedEntry): boolean {
  return fs.existsSync(cachePath(entry));
}

/**
 * A local path for `spec`: an existing file as is (no network); `imagenet` or an entry name as that entry's cached
 * file; an http(s) URL as its cached file. Downloads what is not cached yet and checks what is.
 */
export async function resolveWeights(spec: string, opts: ResolveOptions = {}): Promise<string> {
  const st = fs.statSync(spec, { throwIfNoEntry: false });
  // A folder named `imagenet` (a data set) next to the user must not shadow the keyword.
  if (st && (st.isFile() || !isWeightsRef(spec))) return spec;
  if (isUrl(spec)) return fetchCached({ url: spec, file: urlCacheFile(spec), label: spec }, opts);
  if (isWeightsRef(spec)) {
    const e = entryFor(opts.arch, spec, opts.table);
    return fetchCached(
      { url: entryUrl(e), file: e.file, label: e.name, hashPrefix: e.sha256Prefix, sizeMiB: e.fileSizeMiB, mirrorHint: true },
      opts,
    );
  }
  throw new VggError("no such file or directory (nor is it imagenet, an entry of `vgg weights list` or an http(s) URL)", spec);
}

interface Source {
  url: string;
  /** The cache file, relative to weightsDir(). */
  file: string;
  /** What the user calls it: an entry name or the URL (for `vgg weights pull --force <label>`). */
  label: string;
  hashPrefix?: string;
  sizeMiB?: number;
  /** Suggest VGG_WEIGHTS_MIRROR when unreachable (table entries only). */
  mirrorHint?: boolean;
}

const inflight = new Map<string, Promise<string>>();

async function fetchCached(src: Source, opts: ResolveOptions): Promise<string> {
  const dest = path.join(weightsDir(), src.file);
  // Two resolves of one file in this process share a download; other processes are kept out by the lock file.
  let p = inflight.get(dest);
  if (!p) {
    p = fetchUnshared(src, dest, opts).finally(() => inflight.delete(dest));
    inflight.set(dest, p);
  }
  return p;
}

async function fetchUnshared(src: Source, dest: string, opts: ResolveOptions): Promise<string> {
  const prefix = src.hashPrefix ?? hashPrefixOf(path.basename(src.file));
  // --force never deletes the cached copy first: the new download replaces it only once verified.
  if (!opts.force && fs.existsSync(dest)) {
    await checkCached(dest, prefix, src.label, opts.log);
    return dest;
  }
  try {
    fs.mkdirSync(path.dirname(dest), { recursive: true });
  } catch (err) {
    throw fsError(path.dirname(dest), err, "create the weights cache");
  }
  return withLock(dest, opts, async (waited) => {
    // A file another process just downloaded is used (even with --force: it is as fresh as ours would be).
    if ((!opts.force || waited) && fs.existsSync(dest)) {
      await checkCached(dest, prefix, src.label, opts.log);
      return dest;
    }
    if (opts.force) {
      try {
        fs.rmSync(partialPath(dest), { force: true }); // a partial file may hold the wrong bytes: start over
      } catch (err) {
        throw fsError(partialPath(dest), err, "delete");
      }
    }
    await download(src, dest, prefix, opts);
    return dest;
  });
}

export function partialPath(dest: string): string {
  return `${dest}.partial`;
}

export function sidecarPath(dest: string): string {
  return `${dest}.verified`;
}

// ---------------------------------------------------------------------------------------------------------------
// Checking cached files

interface Sidecar {
  size: number;
  mtimeMs: number;
  sha256: string;
  url?: string;
}

function readSidecar(dest: string): Sidecar | undefined {
  try {
    const s = JSON.parse(fs.readFileSync(sidecarPath(dest), "utf8")) as Sidecar;
    return typeof s.size === "number" && typeof s.mtimeMs === "number" && typeof s.sha256 === "string" ? s : undefined;
  } catch {
    return undefined;
  }
}

function writeSidecar(dest: string, sha256: string, url?: string): void {
  try {
    const st = fs.statSync(dest);
    writeTextAtomic(sidecarPath(dest), `${JSON.stringify({ size: st.size, mtimeMs: st.mtimeMs, sha256, url })}\n`);
  } catch {
    // A read-only cache (shared, or mounted) only costs a re-hash on each use.
  }
}

/** The SHA-256 (hex) of a file's first `limit` bytes (all of it by default), fed into `hash` as well when given. */
export async function sha256File(file: string, hash: Hash = createHash("sha256"), limit?: number): Promise<string> {
  const end = limit === undefined ? undefined : limit - 1;
  if (end !== undefined && end < 0) return hash.copy().digest("hex");
  try {
    for await (const chunk of fs.createReadStream(file, { end, highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  } catch (err) {
    throw fsError(file, err);
  }
  return hash.copy().digest("hex");
}

function corrupt(dest: string, sha: string, want: string, label: string, why: string): VggError {
  return new VggError(
    `cached weights ${dest} are corrupt (${why}: SHA-256 ${sha.slice(0, 12)}..., want ${want.slice(0, 12)}...): ` +
      `delete the file or run \`vgg weights pull --force ${label}\``,
  );
}

async function checkCached(dest: string, prefix: string | undefined, label: string, log?: (line: string) => void): Promise<void> {
  let st: fs.Stats;
  try {
    st = fs.statSync(dest);
  } catch (err) {
    throw fsError(dest, err);
  }
  if (!st.isFile()) throw new VggError("is in the weights cache but is not a file; delete it", dest);
  const side = readSidecar(dest);
  const unchanged = side && side.size === st.size && side.mtimeMs === st.mtimeMs;
  if (unchanged && (!prefix || side.sha256.startsWith(prefix))) return;
  log?.(`checking ${dest} (${fmtMiB(st.size)} MB)`);
  const sha = await sha256File(dest);
  if (prefix && !sha.startsWith(prefix)) throw corrupt(dest, sha, prefix, label, "its hash does not match its name");
  if (!prefix && side && sha !== side.sha256) throw corrupt(dest, sha, side.sha256, label, "changed since it was downloaded");
  writeSidecar(dest, sha, side?.url);
}

export interface VerifyResult {
  file: string;
  ok: boolean;
  sha256: string;
  /** What was compared: "name" (hash prefix), "download" (the hash recorded at download), or "none". */
  against: "name" | "download" | "none";
  why?: string;
}

/**
 * Re-hashes a cached file in full, ignoring the remembered result, and compares it with the prefix its name (or its
 * table entry) promises, else with the hash recorded when it was downloaded.
 */
export async function verifyFile(dest: string, table: readonly PretrainedEntry[] = PRETRAINED): Promise<VerifyResult> {
  const base = path.basename(dest);
  const prefix = table.find((e) => e.file === base)?.sha256Prefix ?? hashPrefixOf(base);
  const side = readSidecar(dest);
  const sha = await sha256File(dest);
  if (prefix) {
    const ok = sha.startsWith(prefix);
    if (ok) writeSidecar(dest, sha, side?.url);
    return {
      file: dest,
      ok,
      sha256: sha,
      against: "name",
      why: ok ? undefined : `SHA-256 ${sha.slice(0, 12)}..., its name says ${prefix}`,
    };
  }
  if (side) {
    const ok = sha === side.sha256;
    return { file: dest, ok, sha256: sha, against: "download", why: ok ? undefined : "changed since it was downloaded" };
  }
  writeSidecar(dest, sha);
  return { file: dest, ok: true, sha256: sha, against: "none" };
}

/** The weights files in the cache (not partial downloads, records, locks or temp files). */
export function cachedFiles(): string[] {
  const dir = weightsDir();
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  const files = (d: string, ns: string[]) =>
    ns
      .filter((n) => !n.startsWith(".") && !/\.(partial|verified|lock)$/.test(n))
      .map((n) => path.join(d, n))
      .filter((f) => fs.statSync(f, { throwIfNoEntry: false })?.isFile());
  const out = files(dir, names);
  for (const n of names) {
    if (!/^url-[0-9a-f]{12}$/.test(n)) continue;
    try {
      out.push(...files(path.join(dir, n), fs.readdirSync(path.join(dir, n))));
    } catch {
      // not a folder
    }
  }
  return out.sort();
}

// ---------------------------------------------------------------------------------------------------------------
// Downloading

/** Creates `lock` holding this pid, atomically: false when it exists (a temp file hard-linked to the name). */
function tryLock(lock: string): boolean {
  const tmp = path.join(path.dirname(lock), `.${path.basename(lock)}.${process.pid}.${Math.random().toString(36).slice(2)}`);
  try {
    fs.writeFileSync(tmp, String(process.pid));
    fs.linkSync(tmp, lock);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw fsError(lock, err, "write");
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}

function lockText(lock: string): string | undefined {
  try {
    return fs.readFileSync(lock, "utf8");
  } catch {
    return undefined; // gone
  }
}

/**
 * Another process downloading the same file would interleave its bytes with ours: one at a time, by lock file. A
 * lock held by a live process is waited for (polling, with backoff) as long as its partial file grows, or at most
 * the stall timeout without growth; one left by a dead process is taken over. `fn` learns whether it waited.
 */
async function withLock<T>(dest: string, opts: ResolveOptions, fn: (waited: boolean) => Promise<T>): Promise<T> {
  const lock = `${dest}.lock`;
  const stallMs = timeoutOf(opts);
  let waited = false;
  let delay = 50;
  let lastSize = -1;
  let lastChange = Date.now();
  while (!tryLock(lock)) {
    const text = lockText(lock);
    if (text === undefined) continue; // released meanwhile: try again
    const pid = Number(text.trim());
    if (!(pid > 0 && pid !== process.pid && alive(pid))) {
      // Left by a process that died (or holding no pid: written by hand). Remove it only if it is still the same
      // lock, not a fresh one another process just took over.
      if (lockText(lock) === text) {
        try {
          fs.rmSync(lock, { force: true });
        } catch (err) {
          throw fsError(lock, err, "delete");
        }
      }
      continue;
    }
    const size = fileSize(partialPath(dest));
    if (size !== lastSize) {
      lastSize = size;
      lastChange = Date.now();
    } else if (Date.now() - lastChange >= stallMs) {
      throw new VggError(
        `${dest} is being downloaded by process ${pid}, with no progress for ${fmtMs(stallMs)}; wait for it, or delete ${lock} if that process is gone`,
      );
    }
    if (!waited) opts.log?.(`waiting for process ${pid}, which is downloading ${dest}`);
    waited = true;
    await new Promise((done) => setTimeout(done, delay));
    delay = Math.min(delay * 2, 2000);
  }
  try {
    return await fn(waited);
  } finally {
    fs.rmSync(lock, { force: true });
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

function fileSize(file: string): number {
  return fs.statSync(file, { throwIfNoEntry: false })?.size ?? 0;
}

export function fmtMiB(bytes: number): string {
  return (bytes / MIB).toFixed(bytes < 10 * MIB ? 2 : 1);
}

function fmtMs(ms: number): string {
  return ms >= 1000 ? `${+(ms / 1000).toFixed(1)} s` : `${ms} ms`;
}

function timeoutOf(opts: ResolveOptions): number {
  const env = Number(process.env.VGG_DOWNLOAD_TIMEOUT_MS);
  return opts.timeoutMs ?? (env > 0 ? env : 30_000);
}

/** Facts about one HTTP exchange the error paths need. */
interface Exchange {
  res: http.IncomingMessage;
  timedOut: boolean;
  url: string;
}

const NET_CODES: Record<string, string> = {
  ENOTFOUND: "host not found",
  EAI_AGAIN: "DNS lookup failed",
  ECONNREFUSED: "connection refused",
  ECONNRESET: "connection reset",
  EHOSTUNREACH: "host unreachable",
  ENETUNREACH: "network unreachable",
  ETIMEDOUT: "connection timed out",
  EPIPE: "connection closed",
};

function unreachable(src: Source, dest: string, why: string): VggError {
  const mirror = src.mirrorHint ? ", or set VGG_WEIGHTS_MIRROR" : "";
  return new VggError(`cannot download ${src.url} (${why}); offline? put the file at ${dest} by hand${mirror}`);
}

/** GET `url`, from byte `start` on, following redirects; resolves at the final response's headers. */
function request(src: Source, url: string, start: number, timeoutMs: number, dest: string, hops = 0): Promise<Exchange> {
  return new Promise((resolve, reject) => {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      return reject(new VggError(`not a valid URL: ${shown(url)}`));
    }
    const headers: Record<string, string> = { "user-agent": "vgg-onnx", "accept-encoding": "identity" };
    if (start > 0) headers.range = `bytes=${start}-`;
    const get = u.protocol === "https:" ? https.get : http.get;
    const ex = { timedOut: false, url } as Exchange;
    // `timeout` is the socket's idle time: it covers connecting, waiting for headers and every gap in the body.
    // agent: false: a download is a one-off; a pooled keep-alive socket would only outlive it.
    const req = get(u, { headers, timeout: timeoutMs, agent: false }, (res) => {
      const code = res.statusCode ?? 0;
      if ([301, 302, 303, 307, 308].includes(code) && res.headers.location) {
        res.resume();
        req.setTimeout(0);
        if (hops >= MAX_REDIRECTS) return reject(new VggError(`more than ${MAX_REDIRECTS} redirects from ${src.url}`));
        let next: URL;
        try {
          next = new URL(res.headers.location, u);
        } catch {
          return reject(new VggError(`${src.url} redirects to an invalid URL: ${shown(res.headers.location)}`));
        }
        if (!/^https?:$/.test(next.protocol)) return reject(new VggError(`${src.url} redirects to a non-http URL: ${shown(next.href)}`));
        request(src, next.href, start, timeoutMs, dest, hops + 1).then(resolve, reject);
        return;
      }
      ex.res = res;
      resolve(ex);
    });
    req.on("timeout", () => {
      ex.timedOut = true;
      req.destroy(new Error("timeout"));
    });
    req.on("error", (err: NodeJS.ErrnoException) => {
      if (ex.res) return; // the body's reader reports it
      if (ex.timedOut) return reject(unreachable(src, dest, `no answer within ${fmtMs(timeoutMs)}`));
      const known = err.code ? NET_CODES[err.code] : undefined;
      reject(unreachable(src, dest, known ? `${known}, ${err.code}` : err.message.split("\n")[0]));
    });
  });
}

/** Content-Range "bytes 100-199/200" -> {start: 100, total: 200}; a 416's "bytes (star)/200" -> {total: 200}. */
function contentRange(v: string | undefined): { start?: number; total?: number } | undefined {
  const m = /^bytes\s+(?:(\d+)-\d+|\*)\/(\d+|\*)$/i.exec(v?.trim() ?? "");
  if (!m) return undefined;
  return { start: m[1] === undefined ? undefined : Number(m[1]), total: m[2] === "*" ? undefined : Number(m[2]) };
}

function contentLength(res: http.IncomingMessage): number | undefined {
  const n = Number(res.headers["content-length"]);
  return res.headers["content-length"] !== undefined && Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}

/** What to do with a response to a (possibly ranged) request: append from `from`, start over, or nothing left. */
type Plan = { kind: "body"; from: number; total?: number } | { kind: "restart" } | { kind: "complete" };

function plan(src: Source, ex: Exchange, start: number, log?: (line: string) => void): Plan {
  const { res } = ex;
  const code = res.statusCode ?? 0;
  if (code === 206 && start > 0) {
    const cr = contentRange(res.headers["content-range"]);
    if (cr?.start !== start) return { kind: "restart" };
    const len = contentLength(res);
    return { kind: "body", from: start, total: cr.total ?? (len === undefined ? undefined : start + len) };
  }
  if (code === 200) {
    if (start > 0) log?.(`${src.url} ignored the range request: downloading from the start`);
    return { kind: "body", from: 0, total: contentLength(res) };
  }
  if (code === 416 && start > 0) {
    // The partial file reaches the end already, or is longer than the file (from another file of that name).
    return contentRange(res.headers["content-range"])?.total === start ? { kind: "complete" } : { kind: "restart" };
  }
  throw new VggError(
    `HTTP ${code}${res.statusMessage ? ` ${res.statusMessage}` : ""} from ${ex.url}${ex.url !== src.url ? ` (redirected from ${src.url})` : ""}`,
  );
}

async function download(src: Source, dest: string, prefix: string | undefined, opts: ResolveOptions): Promise<void> {
  const partial = partialPath(dest);
  const timeoutMs = timeoutOf(opts);
  for (let attempt = 0; attempt < 3; attempt++) {
    const start = fileSize(partial);
    // Hash what is on disk before asking for the rest, so the socket never idles while we read 500 MB.
    const hash = createHash("sha256");
    if (start > 0) await sha256File(partial, hash, start);
    opts.log?.(start > 0 ? `resuming ${src.url} at ${fmtMiB(start)} MB` : `downloading ${src.url} to ${dest}`);
    const ex = await request(src, src.url, start, timeoutMs, dest);
    let p: Plan;
    try {
      p = plan(src, ex, start, opts.log);
    } catch (err) {
      ex.res.resume();
      throw err;
    }
    if (p.kind === "restart") {
      ex.res.destroy();
      fs.rmSync(partial, { force: true });
      continue;
    }
    if (p.kind === "body") {
      checkExpectedSize(src, p.total, ex);
      const h = p.from === 0 ? createHash("sha256") : hash;
      await receive(src, ex, partial, p.from, p.total, h, timeoutMs, opts);
      return finish(src, dest, partial, h.digest("hex"), prefix);
    }
    ex.res.resume();
    return finish(src, dest, partial, hash.digest("hex"), prefix);
  }
  throw new VggError(`${src.url} keeps answering range requests for ${partial} inconsistently; delete that file and retry`);
}

/** A server announcing another size than torchvision lists is serving another file: say so before fetching it. */
function checkExpectedSize(src: Source, total: number | undefined, ex: Exchange): void {
  if (src.sizeMiB === undefined || total === undefined || sizeMatches(total, src.sizeMiB)) return;
  ex.res.destroy();
  throw new VggError(
    `${ex.url} serves ${total} bytes (${fmtMiB(total)} MB), but torchvision lists ${src.sizeMiB} MB for ${src.file}: not the published file`,
  );
}

/** torchvision rounds `_file_size` (MiB) to 3 decimals. */
function sizeMatches(bytes: number, mib: number): boolean {
  return Math.abs(bytes / MIB - mib) <= 0.0005 + 1 / MIB;
}

async function receive(
  src: Source,
  ex: Exchange,
  partial: string,
  from: number,
  total: number | undefined,
  hash: Hash,
  timeoutMs: number,
  opts: ResolveOptions,
): Promise<void> {
  let got = from;
  const bar = (opts.progress ?? process.stderr.isTTY) ? new ProgressBar(path.basename(src.file), from, total) : undefined;
  try {
    await pipeline(
      ex.res,
      async function* (body: AsyncIterable<Buffer>) {
        for await (const chunk of body) {
          hash.update(chunk);
          got += chunk.length;
          bar?.update(got);
          yield chunk;
        }
      },
      fs.createWriteStream(partial, { flags: from > 0 ? "a" : "w" }),
    );
  } catch (err) {
    bar?.end();
    const e = err as NodeJS.ErrnoException;
    if (e.code && ["ENOSPC", "EDQUOT", "EACCES", "EPERM", "EROFS", "EFBIG"].includes(e.code)) throw fsError(partial, err, "write");
    const of = total === undefined ? "" : ` of ${total}`;
    if (ex.timedOut) {
      throw new VggError(
        `no data from ${ex.url} for ${fmtMs(timeoutMs)} (timed out after ${got}${of} bytes); the partial download is kept at ${partial} and resumes on the next run`,
      );
    }
    throw new VggError(`download of ${ex.url} stopped after ${got}${of} bytes (connection closed); run again to resume from ${partial}`);
  }
  bar?.update(got, true);
  bar?.end();
  if (total !== undefined && got !== total) {
    throw new VggError(`download of ${ex.url} stopped after ${got} of ${total} bytes; run again to resume from ${partial}`);
  }
}

/** Verifies the complete partial file and moves it into place; a wrong file is deleted, never renamed. */
function finish(src: Source, dest: string, partial: string, sha: string, prefix: string | undefined): void {
  const size = fileSize(partial);
  if (prefix && !sha.startsWith(prefix)) {
    fs.rmSync(partial, { force: true });
    const sizeNote =
      src.sizeMiB !== undefined && !sizeMatches(size, src.sizeMiB) ? `, ${size} bytes where torchvision lists ${src.sizeMiB} MB` : "";
    throw new VggError(
      `downloaded ${src.url} has SHA-256 ${sha.slice(0, 12)}..., not the ${prefix}... its name promises${sizeNote}; deleted it (a truncated or replaced file: try again)`,
    );
  }
  let format: string | null;
  try {
    format = detectWeightsFormat(partial);
  } catch {
    format = null;
  }
  if (!format) {
    fs.rmSync(partial, { force: true });
    throw new VggError(`downloaded ${src.url} is not a weights file (an HTML page?); deleted it`);
  }
  try {
    syncFile(partial);
    fs.rmSync(sidecarPath(dest), { force: true }); // --force: the old copy's record must not outlive it
    fs.renameSync(partial, dest);
  } catch (err) {
    throw fsError(dest, err, "write");
  }
  syncDir(path.dirname(dest));
  writeSidecar(dest, sha, src.url);
}

/** `vgg16-397923af.pth  123.4/527.8 MB  23%  45.6 MB/s` on one rewritten stderr line. */
class ProgressBar {
  private readonly t0 = Date.now();
  private last = 0;
  private shown = false;
  constructor(
    private readonly label: string,
    private readonly from: number,
    private readonly total: number | undefined,
  ) {}

  update(bytes: number, force = false): void {
    const now = Date.now();
    if (!force && now - this.last < 100) return;
    this.last = now;
    const secs = Math.max((now - this.t0) / 1000, 1e-3);
    const rate = (bytes - this.from) / MIB / secs;
    const of = this.total ? `/${fmtMiB(this.total)} MB  ${Math.floor((100 * bytes) / this.total)}%` : " MB";
    process.stderr.write(`\r${this.label}  ${fmtMiB(bytes)}${of}  ${rate.toFixed(1)} MB/s\x1b[K`);
    this.shown = true;
  }

  end(): void {
    if (this.shown) process.stderr.write("\n");
    this.shown = false;
  }
}
