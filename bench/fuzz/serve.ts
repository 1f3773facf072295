/**
 * The serve fuzz: malformed Open Inference Protocol requests against `vgg serve`'s server (bench/fuzz/serve-child.ts,
 * a process of its own with a 2 s request timeout). Mutations of a valid JSON request and of a valid binary one (bad
 * JSON, wrong, huge, negative and NaN shapes, wrong datatypes, data of the wrong length or depth, binary_data_size
 * and Inference-Header-Content-Length that lie, truncated bodies, unicode junk, deep nesting), HTTP-level junk
 * (methods, paths, headers, chunked framing, declared sizes) and /classify junk, sent over raw sockets; beside them,
 * slow clients that trickle or stall.
 *
 * Every answer must be one of ALLOWED (never a 5xx), no request may go unanswered except those the client cut
 * short or sent too slowly (those must be dropped or answered 408 within the timeout), the server process must
 * stay up, the unmutated requests scattered through the run must get the reference answer, and after the run the
 * same valid requests must get the answer they got before it. Deterministic from the seed: request I is the same
 * bytes on every run.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadSharp } from "../../src/data/folder.js";
import { encodeInferenceGraph } from "../../src/graph/infer.js";
import { keyedRng } from "../../src/random.js";
import { initWeights } from "../../src/weights/init.js";
import { buildModel } from "../../src/zoo/model.js";
import { chance, concat, pick, type Sfc32, utf8, WEIRD_NUMBERS } from "./common.js";
import { mutateBytes } from "./mutate.js";

/**
 * The statuses a malformed request may get: besides the server's own, node's 417 (an Expect header it does not
 * know) and 431 (headers over 16 KiB), and 421 where a mutation hit the Host header (the server answers loopback
 * names only).
 */
export const ALLOWED = [200, 400, 404, 405, 408, 413, 415, 417, 421, 429, 431];

const STREAM_SERVE = 0x53525645;
const CHILD = new URL("./serve-child.js", import.meta.url);
const SHAPE = [1, 3, 32, 32];
const PER = 3 * 32 * 32;
const MAX_BODY = 2 ** 20;
const CUT_GRACE_MS = 150;

/**
 * How a request's bytes go out. all: at once, then wait for the answer. cut: `upTo` bytes, a moment for an answer
 * (CUT_GRACE_MS), then the client half-closes (an incomplete request: the server may answer or drop it). stall:
 * `upTo` bytes, then nothing (it must be dropped, or answered 408, within the timeout). trickle: in pieces `gapMs`
 * apart.
 */
type Send = "all" | "cut" | "stall" | "trickle";

export interface HttpMutant {
  what: string;
  group: string;
  bytes: Uint8Array;
  send: Send;
  upTo?: number;
  pieces?: number;
  gapMs?: number;
  /** Unmutated: must be answered 200 with the reference answer, as JSON or binary. */
  check?: "json" | "binary";
  /** An answer or a drop are both fine (a body over the limit: the server may close before the client reads the 413). */
  mayDrop?: boolean;
}

export interface ServeSeeds {
  /** One 3x32x32 image, values rounded to 3 decimals (short JSON; the same values in binary). */
  x: number[];
  png: Uint8Array;
}

export async function makeServeSeeds(): Promise<ServeSeeds> {
  const rng = keyedRng(1, STREAM_SERVE, 1);
  const x = Array.from({ length: PER }, () => Math.round((rng.float() - 0.5) * 2000) / 1000);
  const sharp = await loadSharp();
  const px = Buffer.from(Array.from({ length: 40 * 40 * 3 }, (_, i) => (i * 37) & 0xff));
  const png = new Uint8Array(
    await sharp(px, { raw: { width: 40, height: 40, channels: 3 } })
      .png()
      .toBuffer(),
  );
  return { x, png };
}

// ---------------------------------------------------------------------------------------------------------------
// Building requests

/** JSON with raw pieces: `raw(...)` leaves a placeholder that serialize() replaces with the text or bytes as given. */
class Doc {
  private readonly raws: (string | Uint8Array)[] = [];
  raw(v: string | Uint8Array): string {
    this.raws.push(v);
    return `\u0001RAW${this.raws.length - 1}\u0001`;
  }
  serialize(v: unknown): Uint8Array {
    const text = JSON.stringify(v);
    const parts = text.split(/"\\u0001RAW(\d+)\\u0001"/);
    return concat(parts.map((p, i) => (i % 2 === 0 ? utf8(p) : ((r) => (typeof r === "string" ? utf8(r) : r))(this.raws[Number(p)]))));
  }
}

type Json = Record<string, unknown>;

function nested(x: number[]): unknown {
  const out: number[][][][] = [[]];
  for (let c = 0; c < 3; c++) {
    out[0].push([]);
    for (let h = 0; h < 32; h++) out[0][c].push(x.slice((c * 32 + h) * 32, (c * 32 + h + 1) * 32));
  }
  return out;
}

function jsonDoc(s: ServeSeeds, nest = false): Json {
  return { inputs: [{ name: "input", shape: [...SHAPE], datatype: "FP32", data: nest ? nested(s.x) : [...s.x] }] };
}

function binaryHeader(): Json {
  return {
    inputs: [{ name: "input", shape: [...SHAPE], datatype: "FP32", parameters: { binary_data_size: PER * 4 } }],
    outputs: [{ name: "logits", parameters: { binary_data: true } }],
  };
}

const payload = (s: ServeSeeds) => new Uint8Array(Float32Array.from(s.x).buffer);

/** A raw HTTP/1.1 request: `contentLength` null leaves the header out, a string writes it as given. */
function request(
  method: string,
  path: string,
  body: Uint8Array,
  headers: [string, string][] = [],
  contentLength: string | null = String(body.length),
): Uint8Array {
  const lines = [`${method} ${path} HTTP/1.1`, "Host: 127.0.0.1", "Connection: close"];
  if (contentLength !== null) lines.push(`Content-Length: ${contentLength}`);
  for (const [k, v] of headers) lines.push(`${k}: ${v}`);
  return concat([utf8(`${lines.join("\r\n")}\r\n\r\n`), body]);
}

const INFER = "/v2/models/toy/infer";
const post = (body: Uint8Array, headers: [string, string][] = [], path = INFER) =>
  request("POST", path, body, [["Content-Type", "application/json"], ...headers]);
const postBinary = (header: Uint8Array, rest: Uint8Array, ihcl: string | null = String(header.length), path = INFER) =>
  request("POST", path, concat([header, rest]), [
    ["Content-Type", "application/octet-stream"],
    ...(ihcl === null ? [] : ([["Inference-Header-Content-Length", ihcl]] as [string, string][])),
  ]);

const chunked = (body: Uint8Array, size = 1000) => {
  const parts: Uint8Array[] = [];
  for (let at = 0; at < body.length; at += size) {
    const c = body.subarray(at, at + size);
    parts.push(utf8(`${c.length.toString(16)}\r\n`), c, utf8("\r\n"));
  }
  parts.push(utf8("0\r\n\r\n"));
  return concat(parts);
};

// ---------------------------------------------------------------------------------------------------------------
// Values that break things

const deepArray = (n: number) => `${"[".repeat(n)}1${"]".repeat(n)}`;
const deepObject = (n: number) => `${'{"a":'.repeat(n)}1${"}".repeat(n)}`;
const DEPTHS = [2, 5, 9, 64, 1000, 100_000, 300_000];
const JUNK_STRINGS = [
  "",
  "\ud800",
  "\udfff\ud800",
  "\u202eupni",
  "input\u0000",
  "input\u200b",
  "ｉｎｐｕｔ",
  "\ufeffinput",
  "😀".repeat(500),
  "x".repeat(100_000),
  "../../etc/passwd",
  "%s%n%x",
  "<script>",
];
/** Byte sequences that are not UTF-8: overlong, surrogates, stray continuation bytes, 0xff. */
const BAD_UTF8 = [[0xc0, 0xaf], [0xed, 0xa0, 0x80], [0x80], [0xff, 0xfe], [0xf4, 0x90, 0x80, 0x80], [0xe2, 0x82]].map((b) =>
  Uint8Array.from(b),
);

function weird(doc: Doc, rng: Sfc32): unknown {
  switch (rng.int(6)) {
    case 0:
      return doc.raw(pick(rng, WEIRD_NUMBERS));
    case 1:
      return pick(rng, JUNK_STRINGS);
    case 2:
      return pick(rng, [null, true, false, {}, [], [[]], 0, -1, 1.5, 1e300]);
    case 3:
      return doc.raw(pick(rng, ["NaN", "-Infinity", "1e400", "-1e400", "0x10", "+1", ".5", "01", "1_000", "undefined"]));
    case 4:
      return doc.raw(rng.int(2) ? deepArray(pick(rng, DEPTHS)) : deepObject(pick(rng, DEPTHS)));
    default:
      return doc.raw(concat([utf8('"'), pick(rng, BAD_UTF8), utf8('"')]));
  }
}

const HUGE_SHAPES: number[][] = [
  [],
  [0, 3, 32, 32],
  [-1, 3, 32, 32],
  [1, 3, 32, -32],
  [2 ** 31, 3, 32, 32],
  [2 ** 53, 3, 32, 32],
  [268435456],
  [16384, 16384],
  [65536, 65536, 65536],
  [1, 3, 32, 31],
  [3, 32, 32],
  [1, 3, 32, 32, 1],
  [2, 3, 32, 32],
  [1, 1, 1, 1, 1, 1, 1, 1, 1],
  Array.from({ length: 1000 }, () => 1),
  [1024, 3, 32, 32],
];

/** One structural mutation of an infer request's JSON (the first input is `t`); returns what was done. */
function mutateDoc(rng: Sfc32, d: Json, doc: Doc): string {
  const first = Array.isArray(d.inputs) ? (d.inputs[0] as unknown) : undefined;
  // After an earlier mutation the first input may be anything: a detached object then takes the edits.
  const t: Json = typeof first === "object" && first !== null && !Array.isArray(first) ? (first as Json) : {};
  switch (rng.int(12)) {
    case 0: {
      if (chance(rng, 0.6)) {
        t.shape = [...pick(rng, HUGE_SHAPES)];
        return `shape [${(t.shape as number[]).slice(0, 6).join(",")}${(t.shape as number[]).length > 6 ? ",..." : ""}]`;
      }
      const shape = [...SHAPE] as unknown[];
      shape[rng.int(shape.length)] = weird(doc, rng);
      t.shape = chance(rng, 0.2) ? weird(doc, rng) : shape;
      return "shape with a weird size";
    }
    case 1: {
      t.datatype = chance(rng, 0.7)
        ? pick(rng, ["FP64", "FP16", "INT64", "INT32", "INT8", "UINT8", "BOOL", "BYTES", "BF16", "UINT64", "fp32", "FP32 ", "STRING"])
        : weird(doc, rng);
      return `datatype ${JSON.stringify(t.datatype)?.slice(0, 20)}`;
    }
    case 2: {
      const data = t.data as unknown[] | undefined;
      if (!Array.isArray(data)) {
        t.data = weird(doc, rng);
        return "data replaced";
      }
      const k = pick(rng, [1, 2, 100, PER - 1]);
      switch (rng.int(5)) {
        case 0:
          data.splice(rng.int(data.length), Math.min(k, data.length));
          return `data less ${k}`;
        case 1:
          for (let k = 0, n = pick(rng, [1, 7, 3072, 300_000]); k < n; k++) data.push(0);
          return "data extended";
        case 2:
          data[rng.int(data.length)] = weird(doc, rng);
          return "a weird element";
        case 3:
          t.data = doc.raw(deepArray(pick(rng, DEPTHS)));
          return "data nested deep";
        default:
          t.data = weird(doc, rng);
          return "data replaced";
      }
    }
    case 3: {
      if (chance(rng, 0.5)) t.name = weird(doc, rng);
      else t.name = pick(rng, ["image", "logits", "INPUT", "input ", ...JUNK_STRINGS]);
      return "input name";
    }
    case 4: {
      const v = rng.int(7);
      if (v === 0) d.inputs = [];
      else if (v === 1) d.inputs = weird(doc, rng);
      else if (v === 2) d.inputs = [t, t];
      else if (v === 3) d.inputs = [t, weird(doc, rng)];
      else if (v === 4) d.inputs = new Array(pick(rng, [2, 100, 5000])).fill({ name: "input", shape: [1], datatype: "FP32", data: [1] });
      else if (v === 5) delete d.inputs;
      else d.inputs = doc.raw(deepArray(pick(rng, DEPTHS)));
      return `inputs variant ${v}`;
    }
    case 5: {
      const key = pick(rng, ["name", "shape", "datatype", "data", "parameters"]);
      if (chance(rng, 0.5)) delete t[key];
      else t[key] = weird(doc, rng);
      return `input field ${key}`;
    }
    case 6: {
      d.outputs = pick(rng, [
        [{ name: "fc6" }],
        "logits",
        [{}],
        [{ name: 5 }],
        [{ name: "logits", parameters: { binary_data: "yes" } }],
        new Array(100).fill({ name: "logits" }),
        null,
        {},
        [{ name: "logits", parameters: { binary_data: true } }],
        [{ name: "logits", parameters: [] }],
      ]);
      if (chance(rng, 0.2)) d.outputs = weird(doc, rng);
      return "outputs";
    }
    case 7: {
      d.parameters = chance(rng, 0.5)
        ? pick(rng, [{ binary_data_output: "true" }, [], "x", null, { binary_data_output: true }, { binary_data_output: 1 }])
        : weird(doc, rng);
      return "parameters";
    }
    case 8: {
      d.id = chance(rng, 0.5) ? pick(rng, [5, null, {}, "x".repeat(200_000), "req-1"]) : weird(doc, rng);
      return "id";
    }
    case 9: {
      for (let k = 0, n = pick(rng, [10, 1000, 50_000]); k < n; k++) d[`k${k}`] = k;
      return "many keys";
    }
    case 10: {
      t[pick(rng, ["__proto__", "constructor", "toString", "hasOwnProperty"])] = weird(doc, rng);
      return "prototype names";
    }
    default: {
      d.inputs = [{ ...t, parameters: chance(rng, 0.5) ? { binary_data_size: weird(doc, rng) } : weird(doc, rng) }];
      return "input parameters";
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The groups of mutants

function valid(rng: Sfc32, s: ServeSeeds): HttpMutant {
  const group = "valid";
  switch (rng.int(6)) {
    case 0:
      return { group, what: "valid JSON", bytes: post(utf8(JSON.stringify(jsonDoc(s)))), send: "all", check: "json" };
    case 1:
      return { group, what: "valid nested JSON", bytes: post(utf8(JSON.stringify(jsonDoc(s, true)))), send: "all", check: "json" };
    case 2: {
      const h = utf8(JSON.stringify(binaryHeader()));
      return { group, what: "valid binary", bytes: postBinary(h, payload(s)), send: "all", check: "binary" };
    }
    case 3: {
      const body = utf8(JSON.stringify(jsonDoc(s)));
      const bytes = request("POST", INFER, chunked(body, pick(rng, [1, 100, 4096])), [["Transfer-Encoding", "chunked"]], null);
      return { group, what: "valid JSON, chunked", bytes, send: "all", check: "json" };
    }
    case 4:
      return {
        group,
        what: "valid JSON at /versions/1 with a query",
        bytes: post(utf8(JSON.stringify(jsonDoc(s))), [], "/v2/models/toy/versions/1/infer?x=1&y=%ZZ"),
        send: "all",
        check: "json",
      };
    default: {
      const h = utf8(JSON.stringify(binaryHeader()));
      const bytes = request("POST", INFER, concat([h, payload(s)]), [
        ["Inference-Header-Content-Length", String(h.length)],
        ["Expect", "100-continue"],
      ]);
      return { group, what: "valid binary, Expect: 100-continue", bytes, send: "all", check: "binary" };
    }
  }
}

function jsonGroup(rng: Sfc32, s: ServeSeeds): HttpMutant {
  const d = jsonDoc(s, chance(rng, 0.2));
  const doc = new Doc();
  const whats: string[] = [];
  for (let k = 0, n = pick(rng, [1, 1, 1, 2, 3]); k < n; k++) whats.push(mutateDoc(rng, d, doc));
  let body = doc.serialize(d);
  // Copies of one deep value can multiply into gigabytes: past the server's limit only the declared size matters.
  if (body.length > 8 * MAX_BODY) body = body.subarray(0, 8 * MAX_BODY);
  return { group: "json", what: whats.join("; "), bytes: post(body), send: "all" };
}

function textGroup(rng: Sfc32, s: ServeSeeds): HttpMutant {
  const body = utf8(JSON.stringify(jsonDoc(s, chance(rng, 0.2))));
  switch (rng.int(8)) {
    case 0:
      return { group: "text", what: "BOM first", bytes: post(concat([Uint8Array.of(0xef, 0xbb, 0xbf), body])), send: "all" };
    case 1:
      return {
        group: "text",
        what: "UTF-16",
        bytes: post(new Uint8Array(Buffer.from(Buffer.from(body).toString(), "utf16le"))),
        send: "all",
      };
    case 2: {
      const at = rng.int(body.length);
      return { group: "text", what: `cut at ${at}`, bytes: post(body.subarray(0, at)), send: "all" };
    }
    case 3:
      return { group: "text", what: "empty", bytes: post(new Uint8Array(0)), send: "all" };
    default: {
      const m = mutateBytes(rng, body);
      return { group: "text", what: m.what, bytes: post(m.bytes.subarray(0, MAX_BODY)), send: "all" };
    }
  }
}

function binaryGroup(rng: Sfc32, s: ServeSeeds): HttpMutant {
  const h = binaryHeader();
  const t = (h.inputs as Json[])[0];
  const doc = new Doc();
  let rest: Uint8Array = payload(s);
  let ihcl: string | null | "auto" = "auto";
  let what: string;
  switch (rng.int(9)) {
    case 0: {
      const size = PER * 4;
      (t.parameters as Json).binary_data_size = chance(rng, 0.6)
        ? size + pick(rng, [-4, -1, 1, 4, -size, size, 2 ** 32, 2 ** 53])
        : weird(doc, rng);
      what = "binary_data_size";
      break;
    }
    case 1:
      ihcl = pick(rng, ["0", "-5", "abc", "", " 12 ", "0x10", "1e3", "99999999999999999999", "18446744073709551616", "NaN", "1, 2"]);
      what = `Inference-Header-Content-Length '${ihcl}'`;
      break;
    case 2:
      ihcl = pick(rng, ["-1", "+1", "-2", "+4", "max"]);
      what = `Inference-Header-Content-Length ${ihcl}`;
      break;
    case 3: {
      const k = pick(rng, [1, 4, 100, PER * 4 - 1, PER * 4]);
      rest = chance(rng, 0.5) ? rest.subarray(0, rest.length - k) : concat([rest, new Uint8Array(k)]);
      what = `binary part ${rest.length} bytes`;
      break;
    }
    case 4: {
      const m = mutateBytes(rng, rest);
      rest = m.bytes.subarray(0, MAX_BODY);
      what = `binary part: ${m.what}`;
      break;
    }
    case 5:
      t.datatype = pick(rng, ["FP16", "FP64", "INT64", "UINT8", "BOOL", "BYTES"]);
      what = `binary datatype ${t.datatype}`;
      break;
    case 6:
      t.data = [1, 2, 3];
      what = "binary data and 'data'";
      break;
    case 7:
      ihcl = null;
      what = "no Inference-Header-Content-Length";
      break;
    default:
      what = `header: ${mutateDoc(rng, h, doc)}`;
  }
  const header = doc.serialize(h);
  let value: string | null;
  if (ihcl === "auto") value = String(header.length);
  else if (ihcl === null) value = null;
  else if (/^[+-]\d$/.test(ihcl)) value = String(header.length + Number(ihcl));
  else if (ihcl === "max") value = String(header.length + rest.length);
  else value = ihcl;
  let bytes = postBinary(header, rest, value);
  if (chance(rng, 0.1)) {
    const m = mutateBytes(rng, bytes);
    bytes = m.bytes;
    what += `; whole request: ${m.what}`;
    return { group: "binary", what, bytes, send: "cut", upTo: bytes.length };
  }
  return { group: "binary", what, bytes, send: "all" };
}

const METHODS = ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE", "FOO", "get", "P0ST", "CONNECT", "PROPFIND", "SEARCH"];
const PATHS = [
  "/v2/models/nope/infer",
  "/v2/models/toy/versions/2/infer",
  "/v2/models/%ZZ/infer",
  "/v2/models/%00/infer",
  "/v2/models/toy/infer/",
  "/v2/models//infer",
  "/v2/models/toy/../toy/infer",
  "/v2/models/toy/infer#frag",
  "*",
  "http://127.0.0.1/v2/models/toy/infer",
  "/v2/models/toy/classify?top=0",
  "/v2/models/toy/ready",
  "/v2/health/live",
  "/metrics",
  "/",
  "//v2",
];

function httpGroup(rng: Sfc32, s: ServeSeeds, index: number): HttpMutant {
  const body = utf8(JSON.stringify(jsonDoc(s)));
  const group = "http";
  switch (rng.int(10)) {
    case 0: {
      const m = pick(rng, METHODS);
      const path = chance(rng, 0.7) ? INFER : pick(rng, PATHS);
      return { group, what: `${m} ${path}`, bytes: request(m, path, body), send: "all" };
    }
    case 1: {
      const path = chance(rng, 0.5)
        ? pick(rng, PATHS)
        : chance(rng, 0.5)
          ? `/v2/models/m${index}-${"x".repeat(rng.int(200))}/infer`
          : `/v2/models/${"a".repeat(pick(rng, [300, 8000, 70_000]))}/infer`;
      return { group, what: `POST ${path.slice(0, 60)}`, bytes: post(body, [], path), send: "all" };
    }
    case 2: {
      const v = pick(rng, ["-1", "abc", "1e3", "0x10", " ", "18446744073709551616", `${body.length}, ${body.length}`]);
      return { group, what: `Content-Length '${v}'`, bytes: request("POST", INFER, body, [], v), send: "cut", upTo: Infinity };
    }
    case 3: {
      const v = String(pick(rng, [MAX_BODY + 1, 2 ** 31, 2 ** 40, 2 ** 53]));
      return {
        group,
        what: `Content-Length ${v} (over the limit)`,
        bytes: request("POST", INFER, body, [], v),
        send: "cut",
        upTo: Infinity,
      };
    }
    case 4: {
      const big = new Uint8Array(MAX_BODY + 1 + rng.int(100_000)).fill(0x20);
      return {
        group,
        what: `body of ${big.length} bytes, chunked (over the limit)`,
        bytes: request("POST", INFER, chunked(big, 65536), [["Transfer-Encoding", "chunked"]], null),
        send: "all",
        mayDrop: true,
      };
    }
    case 5: {
      const framing = pick(rng, [
        "zz\r\nabc\r\n0\r\n\r\n",
        "5\r\nab\r\n0\r\n\r\n",
        "ffffffffffffffff\r\nab\r\n",
        "-1\r\n\r\n",
        "3;ext=\u0000\r\nabc\r\n0\r\n\r\n",
        "0\r\nTrailer: x\r\n\r\n",
      ]);
      return {
        group,
        what: `chunked framing ${JSON.stringify(framing.slice(0, 12))}`,
        bytes: request("POST", INFER, utf8(framing), [["Transfer-Encoding", "chunked"]], null),
        send: "cut",
        upTo: Infinity,
      };
    }
    case 6: {
      const h: [string, string] = pick(rng, [
        ["Transfer-Encoding", "chunked"],
        ["Transfer-Encoding", "gzip"],
        ["Content-Type", "\u00ff\u00fe"],
        ["Content-Type", "multipart/form-data; boundary=x"],
        ["Content-Encoding", "gzip"],
        ["X-Big", "x".repeat(pick(rng, [1000, 20_000, 100_000]))],
        ["Bad Name", "x"],
        ["X-Null", "a\u0000b"],
        ["Upgrade", "websocket"],
        ["Expect", "100-continue"],
        ["Expect", "teapot"],
        ["Host", "evil.example"],
        ["Inference-Header-Content-Length", String(body.length)],
      ]);
      return { group, what: `header ${h[0]}: ${h[1].slice(0, 20)}`, bytes: post(body, [h]), send: "all" };
    }
    case 7: {
      const many: [string, string][] = Array.from({ length: pick(rng, [100, 2000]) }, (_, k) => [`X-H${k}`, "v"]);
      return { group, what: `${many.length} headers`, bytes: post(body, many), send: "all" };
    }
    case 8: {
      const raw = request("POST", INFER, body);
      const m = mutateBytes(rng, raw.subarray(0, 200));
      return { group, what: `request head: ${m.what}`, bytes: concat([m.bytes, raw.subarray(200)]), send: "cut", upTo: Infinity };
    }
    default: {
      const junk = new Uint8Array(pick(rng, [1, 16, 1000])).map(() => rng.int(256));
      return { group, what: `${junk.length} random bytes`, bytes: junk, send: "cut", upTo: Infinity };
    }
  }
}

function classifyGroup(rng: Sfc32, s: ServeSeeds): HttpMutant {
  const group = "classify";
  const path = `/v2/models/toy/classify${pick(rng, ["", "", "?top=3", "?top=0", "?top=abc", "?top=99999999999", "?top=1e3", "?top=-1", "?top="])}`;
  let body: Uint8Array;
  let what: string;
  switch (rng.int(4)) {
    case 0:
      body = s.png;
      what = "the PNG";
      break;
    case 1: {
      const m = mutateBytes(rng, s.png);
      body = m.bytes;
      what = `PNG: ${m.what}`;
      break;
    }
    case 2:
      body = new Uint8Array(0);
      what = "empty";
      break;
    default:
      body = utf8(JSON.stringify(jsonDoc(s)));
      what = "a JSON infer request";
  }
  return { group, what: `${path}: ${what}`, bytes: request("POST", path, body, [["Content-Type", "image/png"]]), send: "all" };
}

/** A request cut short at the HTTP level: the body shorter than its Content-Length, then the client half-closes. */
function truncatedGroup(rng: Sfc32, s: ServeSeeds): HttpMutant {
  const bytes = chance(rng, 0.5) ? post(utf8(JSON.stringify(jsonDoc(s)))) : postBinary(utf8(JSON.stringify(binaryHeader())), payload(s));
  const upTo = pick(rng, [10, 60, 150, bytes.length >> 1, bytes.length - 1]);
  return { group: "truncated", what: `first ${upTo} of ${bytes.length} bytes, then the client closes`, bytes, send: "cut", upTo };
}

/** Requests that once got a 5xx, a drop or unbounded memory, each with the status it must get now. */
export function regressions(s: ServeSeeds): (HttpMutant & { expect: number })[] {
  const group = "regression";
  const input = (data: string, shape = "[1,3,32,32]", datatype = "FP32") =>
    utf8(`{"inputs":[{"name":"input","shape":${shape},"datatype":"${datatype}","data":${data}}]}`);
  const x = JSON.stringify(s.x);
  return [
    // JSON.parse takes any depth, the codec's walk of 'data' recursed: a stack overflow, answered 500.
    { group, what: "data nested 100,000 deep", bytes: post(input(deepArray(100_000))), send: "all", expect: 400 },
    { group, what: "data nested one deeper than the shape", bytes: post(input(`[${x}]`, "[3072]")), send: "all", expect: 400 },
    {
      group,
      what: "a size nested 100,000 deep in shape",
      bytes: post(input(x, `[1,${deepArray(100_000)},32,32]`)),
      send: "all",
      expect: 400,
    },
    // The message quoted the element with JSON.stringify, which recursed: 500.
    { group, what: "an object nested 100,000 deep in data", bytes: post(input(`[${deepObject(100_000)}]`)), send: "all", expect: 400 },
    // The array for the shape was allocated before 'data' was counted: 2 GiB for a 90-byte request.
    { group, what: "FP64 [268435456] with one element", bytes: post(input("[1]", "[268435456]", "FP64")), send: "all", expect: 400 },
    { group, what: "INT64 [16384,16384] with one element", bytes: post(input("[1]", "[16384,16384]", "INT64")), send: "all", expect: 400 },
    // node closes a CONNECT without an answer unless the server listens for it.
    { group, what: "CONNECT", bytes: request("CONNECT", "127.0.0.1:80", new Uint8Array(0)), send: "all", expect: 405 },
    // Each name in a URL was a new label of the metrics: memory that any client could grow (checked after the run).
    ...Array.from({ length: 100 }, (_, k) => ({
      group,
      what: `unknown model name ${k}`,
      bytes: post(input(x), [], `/v2/models/no-such-model-${k}/infer`),
      send: "all" as const,
      expect: 404,
    })),
  ];
}

/** /metrics after the run stays under this (it grew by a kilobyte per model name clients made up). */
export const METRICS_LIMIT = 64 * 1024;

/**
 * Request `index` of the run: one of the groups above (about 5% unmutated valid requests, checked against the
 * reference answer). Depends only on (seed, index).
 */
export function makeServeMutant(s: ServeSeeds, seed: number, index: number): HttpMutant {
  const rng = keyedRng(seed, STREAM_SERVE, 2, index);
  const r = rng.int(100);
  if (r < 5) return valid(rng, s);
  if (r < 40) return jsonGroup(rng, s);
  if (r < 55) return textGroup(rng, s);
  if (r < 75) return binaryGroup(rng, s);
  if (r < 88) return httpGroup(rng, s, index);
  if (r < 94) return classifyGroup(rng, s);
  return truncatedGroup(rng, s);
}

/** Slow client `index`: it stalls, idles, or trickles its request (fast enough to be answered, or too slow). */
export function makeSlowMutant(s: ServeSeeds, seed: number, index: number, timeoutMs: number): HttpMutant {
  const rng = keyedRng(seed, STREAM_SERVE, 3, index);
  const body = utf8(JSON.stringify(jsonDoc(s)));
  const bytes = post(body);
  const group = "slow";
  switch (index % 5) {
    case 0:
      return { group, what: "stall in the body", bytes, send: "stall", upTo: bytes.length - 1 - rng.int(body.length - 1) };
    case 1:
      return { group, what: "stall in the headers", bytes, send: "stall", upTo: 1 + rng.int(60) };
    case 2:
      return { group, what: "idle connection", bytes, send: "stall", upTo: 0 };
    case 3:
      return { group, what: "trickle, in time", bytes, send: "trickle", pieces: 8, gapMs: Math.floor(timeoutMs / 40), check: "json" };
    default:
      return { group, what: "trickle, too slow", bytes, send: "trickle", pieces: 12, gapMs: Math.floor(timeoutMs / 4) };
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The client

export interface Exchange {
  /** The first final status the server sent, if any. */
  status?: number;
  headers?: string;
  body?: Buffer;
  /** The server closed (or reset) without an answer, or the client gave up at its deadline. */
  end: "answered" | "closed" | "deadline";
  ms: number;
}

/** Sends one request over a fresh socket and reads the first final answer (or sees the connection end). */
export function exchange(port: number, m: HttpMutant, deadlineMs: number): Promise<Exchange> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const sock = net.connect(port, "127.0.0.1");
    let buf = Buffer.alloc(0);
    let done = false;
    let status: number | undefined;
    let headers: string | undefined;
    const finish = (end: Exchange["end"], body?: Buffer) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve({ status, headers, body, end: status !== undefined && end !== "deadline" ? "answered" : end, ms: performance.now() - t0 });
    };
    const timer = setTimeout(() => finish("deadline"), deadlineMs);
    const parse = () => {
      for (;;) {
        const at = buf.indexOf("\r\n\r\n");
        if (at < 0) return;
        const head = buf.subarray(0, at).toString("latin1");
        const code = /^HTTP\/1\.[01] (\d{3})/.exec(head);
        if (!code) return finish("closed");
        if (code[1].startsWith("1")) {
          buf = buf.subarray(at + 4);
          continue;
        }
        status = Number(code[1]);
        headers = head;
        const cl = /\r\ncontent-length:\s*(\d+)/i.exec(head);
        if (!cl) return; // read to the end of the connection
        if (buf.length - at - 4 >= Number(cl[1])) finish("answered", buf.subarray(at + 4, at + 4 + Number(cl[1])));
        return;
      }
    };
    sock.on("data", (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (status === undefined) parse();
      else {
        const at = buf.indexOf("\r\n\r\n");
        const cl = /\r\ncontent-length:\s*(\d+)/i.exec(headers ?? "");
        if (cl && buf.length - at - 4 >= Number(cl[1])) finish("answered", buf.subarray(at + 4, at + 4 + Number(cl[1])));
      }
    });
    sock.on("error", () => {});
    sock.on("close", () => finish("closed"));
    sock.on("connect", () => {
      const upTo = Math.min(m.upTo ?? m.bytes.length, m.bytes.length);
      if (m.send === "all") sock.write(m.bytes);
      else if (m.send === "cut") {
        sock.write(m.bytes.subarray(0, upTo));
        setTimeout(() => {
          if (!done) sock.end();
        }, CUT_GRACE_MS);
      } else if (m.send === "stall") {
        if (upTo > 0) sock.write(m.bytes.subarray(0, upTo));
      } else {
        const n = m.pieces ?? 8;
        const size = Math.ceil(m.bytes.length / n);
        let k = 0;
        const next = () => {
          if (done || sock.destroyed) return;
          sock.write(m.bytes.subarray(k * size, (k + 1) * size));
          if (++k < n) setTimeout(next, m.gapMs ?? 50);
        };
        next();
      }
    });
  });
}

// ---------------------------------------------------------------------------------------------------------------
// The run

export interface ServeFuzzOptions {
  requests: number;
  seed?: number;
  /** Clients sending the mutants at once (default 4). */
  lanes?: number;
  /** Slow clients, run beside the others (default: 1 per 100 requests, at least 5). */
  slow?: number;
  /** The server's request timeout (default 2000 ms). */
  timeoutMs?: number;
  /** Only these request indices (to reproduce one). */
  indices?: readonly number[];
  onProgress?: (done: number, total: number) => void;
}

export interface ServeFailure {
  index: number;
  group: string;
  kind: "status" | "dropped" | "hang" | "wrong answer" | "server" | "slow";
  what: string;
  message: string;
}

export interface ServeFuzzStats {
  requests: number;
  /** The server's request timeout, ms. */
  timeoutMs: number;
  slowClients: number;
  /** Answers by status ("dropped" where the server closed without one). */
  statuses: Record<string, number>;
  /** Requests by group, and by group and outcome. */
  groups: Record<string, Record<string, number>>;
  /** What the slow clients saw: "408", "dropped", "200" (a trickle in time) ... */
  slowOutcomes: Record<string, number>;
  /** The server's error messages, particulars masked, and how often each came. */
  reasons: Record<string, number>;
  failures: ServeFailure[];
  /** Unmutated requests answered with the reference answer during the run. */
  validChecked: number;
  maxMs: number;
  slowest?: { index: number; what: string; ms: number };
  /** The longest a slow client was held before the server dropped it. */
  slowMaxMs: number;
  serverRssMB: { start: number; end: number };
  metricsBytes: number;
  /** After the run: the server alive, ready, the valid requests answered as before the run, a clean stop. */
  after: { alive: boolean; ready: boolean; sameAnswer: boolean; exitCode: number | null };
  seconds: number;
}

export interface ServeChild {
  proc: ChildProcess;
  port: number;
  output: () => string;
  exited: Promise<number | null>;
}

/** The fuzz's model: vgg11 at width /16, compact head, 10 classes of 3x32x32 (1.9 MB). */
export function writeToyModel(file: string): void {
  const m = buildModel("vgg11", { widthDivisor: 16, numClasses: 10, inputSize: 32, head: "compact" });
  writeFileSync(file, encodeInferenceGraph(m, initWeights(m, "torchvision", 1), { taps: ["logits"] }));
}

/** The unmutated JSON request (one image), as the fuzz sends it. */
export const validJson = (s: ServeSeeds): HttpMutant => ({
  group: "valid",
  what: "valid JSON",
  bytes: post(utf8(JSON.stringify(jsonDoc(s)))),
  send: "all",
  check: "json",
});

/** serve-child.js on `model` (served as "toy") with `flags` (--timeout-ms, --max-batch ...); resolves once it answers. */
export function startServeChild(model: string, flags: string[]): Promise<ServeChild> {
  const args = [CHILD.pathname, "--model", model, "--max-body", String(MAX_BODY), ...flags];
  const proc = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  const exited = new Promise<number | null>((r) => proc.on("exit", (code, sig) => r(code ?? (sig ? -1 : null))));
  proc.stderr?.setEncoding("utf8").on("data", (d: string) => (out = (out + d).slice(-4000)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill("SIGKILL");
      reject(new Error(`the fuzz server did not start: ${out}`));
    }, 60_000);
    proc.on("exit", () => reject(new Error(`the fuzz server exited: ${out}`)));
    proc.stdout?.setEncoding("utf8").on("data", (d: string) => {
      out = (out + d).slice(-4000);
      const m = /ready: http:\/\/127\.0\.0\.1:(\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ proc, port: Number(m[1]), output: () => out, exited });
      }
    });
  });
}

function rssMB(pid: number | undefined): number {
  try {
    return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? Number.NaN) / 1024;
  } catch {
    return Number.NaN;
  }
}

/** The logits of an answer (JSON or binary), or a reason it has none. */
function logitsOf(e: Exchange): Float32Array | string {
  if (e.status !== 200 || !e.body) return `status ${e.status ?? e.end}`;
  const ihcl = /\r\ninference-header-content-length:\s*(\d+)/i.exec(e.headers ?? "");
  try {
    if (ihcl) {
      const n = Number(ihcl[1]);
      const bytes = e.body.subarray(n);
      return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
    }
    const j = JSON.parse(e.body.toString("utf8")) as { outputs: { data: number[] }[] };
    return Float32Array.from(j.outputs[0].data);
  } catch (err) {
    return `unreadable answer: ${(err as Error).message}`;
  }
}

function close(a: Float32Array, b: Float32Array, tol: number): boolean {
  if (a.length !== b.length) return false;
  let num = 0;
  let den = 0;
  for (let k = 0; k < a.length; k++) {
    num = Math.max(num, Math.abs(a[k] - b[k]));
    den = Math.max(den, Math.abs(b[k]));
  }
  return num / (den || 1) <= tol;
}

/** A server error message with its particulars masked, so that messages group by kind. */
function reasonOf(message: string): string {
  return message
    .replace(/'[^']*'/g, "'...'")
    .replace(/"[^"]*"/g, '"..."')
    .replace(/\[[^\]]*\]/g, "[...]")
    .replace(/-?\d+(\.\d+)?(e[+-]?\d+)?/g, "N")
    .slice(0, 100);
}

const bump = (r: Record<string, number>, k: string) => {
  r[k] = (r[k] ?? 0) + 1;
};

export async function runServeFuzz(o: ServeFuzzOptions): Promise<ServeFuzzStats> {
  const t0 = performance.now();
  const seed = o.seed ?? 1;
  const timeoutMs = o.timeoutMs ?? 2000;
  const indices = o.indices ?? Array.from({ length: o.requests }, (_, i) => i);
  const nSlow = o.indices ? 0 : (o.slow ?? Math.max(5, Math.ceil(o.requests / 100)));
  const dir = mkdtempSync(join(tmpdir(), "vgg-fuzz-serve-"));
  const st: ServeFuzzStats = {
    requests: indices.length,
    timeoutMs,
    slowClients: nSlow,
    statuses: {},
    groups: {},
    slowOutcomes: {},
    reasons: {},
    failures: [],
    validChecked: 0,
    maxMs: 0,
    slowMaxMs: 0,
    serverRssMB: { start: Number.NaN, end: Number.NaN },
    metricsBytes: 0,
    after: { alive: false, ready: false, sameAnswer: false, exitCode: null },
    seconds: 0,
  };
  let child: ServeChild | undefined;
  try {
    const model = join(dir, "toy.onnx");
    writeToyModel(model);
    const seeds = await makeServeSeeds();
    child = await startServeChild(model, ["--timeout-ms", String(timeoutMs)]);
    const c = child;
    let crashed = false;
    let stopping = false;
    void c.exited.then((code) => {
      if (st.after.exitCode === null && !stopping) {
        crashed = true;
        st.failures.push({ index: -1, group: "server", kind: "server", what: "", message: `the server exited (${code}): ${c.output()}` });
      }
    });
    const deadline = Math.max(20_000, 5 * timeoutMs);
    const reference = async () => {
      const json = await exchange(c.port, validJson(seeds), deadline);
      const h = utf8(JSON.stringify(binaryHeader()));
      const bin = await exchange(c.port, { group: "", what: "", bytes: postBinary(h, payload(seeds)), send: "all" }, deadline);
      return { json: logitsOf(json), binary: logitsOf(bin) };
    };
    const before = await reference();
    if (typeof before.json === "string" || typeof before.binary === "string")
      throw new Error(`the fuzz server does not answer a valid request: ${before.json} / ${before.binary}`);
    const ref = before.json;
    st.serverRssMB.start = rssMB(c.proc.pid);

    const record = (index: number, mu: HttpMutant, e: Exchange) => {
      const outcome = e.end === "answered" ? String(e.status) : e.end === "closed" ? "dropped" : "no answer";
      bump(st.statuses, outcome);
      st.groups[mu.group] ??= {};
      bump(st.groups[mu.group], outcome);
      if (e.ms > st.maxMs && mu.send !== "stall" && mu.send !== "trickle") {
        st.maxMs = e.ms;
        st.slowest = { index, what: `${mu.group}: ${mu.what}`, ms: e.ms };
      }
      const fail = (kind: ServeFailure["kind"], message: string) =>
        st.failures.push({ index, group: mu.group, kind, what: mu.what.slice(0, 200), message });
      if (e.end === "deadline") return fail("hang", `no answer and no close after ${deadline} ms`);
      if (e.end === "closed") {
        // Over the body limit the server answers 413 and closes as soon as it knows: the client, still sending, may
        // see the reset before the answer.
        const over = mu.mayDrop || mu.bytes.length > MAX_BODY;
        if (mu.send === "all" && !over) fail("dropped", "the server closed the connection without an answer");
        return;
      }
      if (!ALLOWED.includes(e.status as number)) {
        fail("status", `answered ${e.status}: ${e.body?.toString("utf8").slice(0, 300) ?? ""}`);
      }
      if (e.status !== 200 && e.body && e.body.length > 0) {
        try {
          const msg = (JSON.parse(e.body.toString("utf8")) as { error?: unknown }).error;
          if (typeof msg === "string") bump(st.reasons, `${e.status} ${reasonOf(msg)}`);
        } catch {
          bump(st.reasons, `${e.status} (not JSON)`);
        }
      }
      if (mu.check) {
        const got = logitsOf(e);
        if (typeof got === "string") fail("wrong answer", `a valid request: ${got}`);
        else if (!close(got, ref, 1e-4)) fail("wrong answer", "a valid request got logits unlike the reference");
        else st.validChecked++;
      }
    };

    for (const r of regressions(seeds)) {
      const e = await exchange(c.port, r, deadline);
      record(-1, r, e);
      if (e.end === "answered" && e.status !== r.expect)
        st.failures.push({ index: -1, group: r.group, kind: "status", what: r.what, message: `answered ${e.status}, not ${r.expect}` });
    }

    // The slow clients run beside the others, a few at a time: stalls must not hold up anyone else.
    const slow = async () => {
      let next = 0;
      const lane = async () => {
        for (let k = next++; k < nSlow && !crashed; k = next++) {
          const mu = makeSlowMutant(seeds, seed, k, timeoutMs);
          const limit = mu.send === "stall" || (mu.gapMs ?? 0) * (mu.pieces ?? 0) > timeoutMs ? timeoutMs + 4000 : deadline;
          const e = await exchange(c.port, mu, limit);
          const outcome = e.end === "answered" ? String(e.status) : e.end === "closed" ? "dropped" : "held past the timeout";
          bump(st.slowOutcomes, `${mu.what}: ${outcome}`);
          if (mu.send === "stall" || mu.what === "trickle, too slow") st.slowMaxMs = Math.max(st.slowMaxMs, e.ms);
          const fail = (message: string) => st.failures.push({ index: k, group: "slow", kind: "slow", what: mu.what, message });
          if (e.end === "deadline") fail(`still open after ${limit} ms (the server's timeout is ${timeoutMs} ms)`);
          else if (e.end === "answered" && !ALLOWED.includes(e.status as number)) fail(`answered ${e.status}`);
          else if (mu.check) {
            const got = logitsOf(e);
            if (typeof got === "string" || !close(got, ref, 1e-4))
              fail(`sent in time, but: ${typeof got === "string" ? got : "wrong logits"}`);
          } else if (e.end === "answered" && e.status === 200) fail("a request the client never finished was answered 200");
        }
      };
      await Promise.all(Array.from({ length: Math.min(8, nSlow) }, lane));
    };
    let next = 0;
    let finished = 0;
    const lane = async () => {
      for (let j = next++; j < indices.length && !crashed; j = next++) {
        const mu = makeServeMutant(seeds, seed, indices[j]);
        record(indices[j], mu, await exchange(c.port, mu, deadline));
        finished++;
        if (finished % 1000 === 0) o.onProgress?.(finished, indices.length);
      }
    };
    await Promise.all([slow(), ...Array.from({ length: o.lanes ?? 4 }, lane)]);

    st.after.alive = c.proc.exitCode === null && !crashed;
    if (st.after.alive) {
      st.serverRssMB.end = rssMB(c.proc.pid);
      const get = (path: string) =>
        exchange(c.port, { group: "", what: "", bytes: request("GET", path, new Uint8Array(0)), send: "all" }, deadline);
      st.after.ready = (await get("/v2/health/ready")).status === 200;
      st.metricsBytes = (await get("/metrics")).body?.length ?? 0;
      const after = await reference();
      st.after.sameAnswer =
        typeof after.json !== "string" &&
        typeof after.binary !== "string" &&
        close(after.json, before.json, 1e-6) &&
        close(after.binary, before.binary as Float32Array, 1e-6);
      stopping = true;
      c.proc.kill("SIGTERM");
      let timer: NodeJS.Timeout | undefined;
      st.after.exitCode = await Promise.race([c.exited, new Promise<null>((r) => (timer = setTimeout(() => r(null), 15_000)))]);
      clearTimeout(timer);
      if (st.metricsBytes > METRICS_LIMIT)
        st.failures.push({ index: -1, group: "after", kind: "server", what: "", message: `/metrics is ${st.metricsBytes} bytes` });
      if (!st.after.ready) st.failures.push({ index: -1, group: "after", kind: "server", what: "", message: "not ready after the run" });
      if (!st.after.sameAnswer)
        st.failures.push({
          index: -1,
          group: "after",
          kind: "wrong answer",
          what: "",
          message: "a valid request is answered differently after the run",
        });
      if (st.after.exitCode !== 0)
        st.failures.push({ index: -1, group: "after", kind: "server", what: "", message: `SIGTERM: exit ${st.after.exitCode}` });
    }
  } finally {
    if (child && child.proc.exitCode === null) child.proc.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  }
  st.seconds = (performance.now() - t0) / 1000;
  return st;
}

/** The run as plain text: outcomes by group, the slow clients, the checks after the run. */
export function serveTable(st: ServeFuzzStats): string {
  const outcomes = Object.keys(st.statuses).sort();
  const head = ["group", "requests", ...outcomes];
  const rows = Object.entries(st.groups).map(([g, r]) => [
    g,
    Object.values(r).reduce((a, b) => a + b, 0),
    ...outcomes.map((k) => r[k] ?? 0),
  ]);
  rows.push(["all", Object.values(st.statuses).reduce((a, b) => a + b, 0), ...outcomes.map((k) => st.statuses[k] ?? 0)]);
  const cells = [head, ...rows].map((r) => r.map(String));
  const w = head.map((_, i) => Math.max(...cells.map((r) => r[i].length)));
  const line = (r: string[]) => `| ${r.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join(" | ")} |`;
  const sep = `|${w.map((n, i) => (i === 0 ? `${"-".repeat(n + 1)}-` : `${"-".repeat(n + 1)}:`)).join("|")}|`;
  const slow = Object.entries(st.slowOutcomes)
    .sort()
    .map(([k, n]) => `  ${String(n).padStart(5)}  ${k}`);
  return [
    line(cells[0]),
    sep,
    ...cells.slice(1).map(line),
    "",
    `slow clients: ${st.slowClients} (the server's request timeout ${st.timeoutMs} ms; longest held ${(st.slowMaxMs / 1000).toFixed(1)} s)`,
    ...slow,
    "",
    `valid requests checked against the reference answer during the run: ${st.validChecked}`,
    `slowest answer: ${st.maxMs.toFixed(0)} ms${st.slowest ? ` (#${st.slowest.index} ${st.slowest.what.slice(0, 80)})` : ""}`,
    `server RSS: ${st.serverRssMB.start.toFixed(0)} MB before, ${st.serverRssMB.end.toFixed(0)} MB after; /metrics ${st.metricsBytes} bytes`,
    `after the run: alive ${st.after.alive}, ready ${st.after.ready}, same answer ${st.after.sameAnswer}, SIGTERM exit ${st.after.exitCode}`,
    `${st.failures.length} failures; ${st.seconds.toFixed(1)} s`,
  ].join("\n");
}
