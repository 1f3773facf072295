/**
 * The static-file half of the demo server: request paths to files under one root, never outside it (no `..`
 * segment, encoded or not; no dotfiles; symlinks must stay inside), no directory listings, a fixed MIME table,
 * and the headers that make the page cross-origin isolated (COOP + COEP, so onnxruntime-web can use
 * SharedArrayBuffer and WASM threads) and keep it on its own origin (CSP, CORP).
 */
import * as fs from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import * as path from "node:path";

export const MIME: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".wasm": "application/wasm",
  ".onnx": "application/octet-stream",
  ".png": "image/png",
  ".jpg": "image/jpeg",
  ".jpeg": "image/jpeg",
  ".webp": "image/webp",
  ".svg": "image/svg+xml",
  ".ico": "image/x-icon",
  ".txt": "text/plain; charset=utf-8",
};

export function mimeOf(file: string): string {
  return MIME[path.extname(file).toLowerCase()] ?? "application/octet-stream";
}

/**
 * Headers on every response. COOP/COEP make the page cross-origin isolated; CORP lets its own subresources load
 * under COEP and no other origin embed them; the CSP allows this origin only (plus WebAssembly compilation, and
 * blob:/data: for the images the user picks).
 */
export const SECURITY_HEADERS: Record<string, string> = {
  "Cross-Origin-Opener-Policy": "same-origin",
  "Cross-Origin-Embedder-Policy": "require-corp",
  "Cross-Origin-Resource-Policy": "same-origin",
  "Content-Security-Policy":
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; connect-src 'self'; img-src 'self' blob: data:; style-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  "X-Content-Type-Options": "nosniff",
  "Referrer-Policy": "no-referrer",
};

export type Resolved = { file: string } | { status: 400 | 403 | 404 };

/**
 * The file under `root` that the request target names, or the status to answer with: 400 for a malformed target,
 * 403 for any `..` or `.` segment (also when percent-encoded, e.g. %2e%2e) or an encoded slash/backslash/NUL,
 * 404 for dotfiles, directories and anything missing. `root` must be absolute and real (fs.realpathSync).
 */
export function resolveUnder(root: string, target: string): Resolved {
  const q = target.search(/[?#]/);
  const raw = q >= 0 ? target.slice(0, q) : target;
  if (!raw.startsWith("/")) return { status: 400 };
  const segs: string[] = [];
  for (const enc of raw.slice(1).split("/")) {
    let seg: string;
    try {
      seg = decodeURIComponent(enc);
    } catch {
      return { status: 400 };
    }
    if (seg === "." || seg === ".." || /[/\\\0]/.test(seg)) return { status: 403 };
    if (seg === "") continue;
    if (seg.startsWith(".")) return { status: 404 };
    segs.push(seg);
  }
  const file = path.join(root, ...segs);
  if (file !== root && !file.startsWith(root + path.sep)) return { status: 403 };
  let real: string;
  try {
    real = fs.realpathSync(file);
  } catch {
    return { status: 404 };
  }
  if (real !== root && !real.startsWith(root + path.sep)) return { status: 403 };
  return { file: real };
}

const REASON: Record<number, string> = {
  400: "Bad Request",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  421: "Misdirected Request",
  500: "Internal Server Error",
};

export function sendStatus(res: ServerResponse, status: number, extra: Record<string, string> = {}): void {
  const body = `${status} ${REASON[status] ?? ""}\n`;
  res.writeHead(status, {
    ...SECURITY_HEADERS,
    "Content-Type": "text/plain; charset=utf-8",
    "Content-Length": String(Buffer.byteLength(body)),
    "Cache-Control": "no-store",
    ...extra,
  });
  res.end(body);
}

export function sendBody(req: IncomingMessage, res: ServerResponse, body: string | Buffer, type: string): void {
  const b = typeof body === "string" ? Buffer.from(body) : body;
  res.writeHead(200, { ...SECURITY_HEADERS, "Content-Type": type, "Content-Length": String(b.length), "Cache-Control": "no-cache" });
  res.end(req.method === "HEAD" ? undefined : b);
}

/** Streams a regular file (404 for anything else, e.g. a directory: nothing is ever listed). */
export function sendFile(req: IncomingMessage, res: ServerResponse, file: string, type = mimeOf(file)): void {
  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(file);
  } catch {
    st = undefined;
  }
  if (!st?.isFile()) {
    sendStatus(res, 404);
    return;
  }
  res.writeHead(200, {
    ...SECURITY_HEADERS,
    "Content-Type": type,
    "Content-Length": String(st.size),
    "Cache-Control": "no-cache",
    "Last-Modified": st.mtime.toUTCString(),
  });
  if (req.method === "HEAD") {
    res.end();
    return;
  }
  const s = fs.createReadStream(file);
  s.on("error", () => res.destroy());
  s.pipe(res);
}
