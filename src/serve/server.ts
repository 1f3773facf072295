/**
 * `vgg serve`: the Open Inference Protocol (KServe v2; Triton's HTTP API) over node:http, for the models of
 * models.ts. Endpoints: /v2/health/live, /v2/health/ready, /v2, /v2/models/{name}[/versions/{v}], .../ready,
 * .../infer (JSON, or with Triton's binary tensor data), .../classify (ours: an image in, top-k out), /metrics.
 * Bodies are bounded (413), the queue is bounded (429 with Retry-After), slow clients time out, and a stop
 * (SIGTERM, SIGINT) answers what is queued before the process exits.
 */
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import { VggError } from "../errors.js";
import { QueueFull } from "./batcher.js";
import { encodeInferResponse, ProtocolError, parseInferRequest } from "./codec.js";
import { Metrics } from "./metrics.js";
import type { ServedModel } from "./models.js";

export interface ServerOptions {
  /** Largest request body (default 64 MiB): a batch of 8 images at 224 is 4.8 MB as binary, ~20 MB as JSON. */
  maxBodyBytes?: number;
  /** Time a client has to send a whole request (default 30 s); then 408 and the connection is closed. */
  requestTimeoutMs?: number;
  /** Default top-k of /classify (default 5). */
  top?: number;
}

export const SERVER_NAME = "vgg-onnx";
export const DEFAULT_MAX_BODY = 64 * 2 ** 20;
const LOOPBACK = new Set(["127.0.0.1", "localhost", "[::1]"]);

type Reply = { status: number; body: Buffer | string; headers?: Record<string, string> };

const json = (status: number, v: unknown, headers?: Record<string, string>): Reply => ({
  status,
  body: JSON.stringify(v),
  headers: { "Content-Type": "application/json", ...headers },
});

export class InferenceServer {
  readonly http: http.Server;
  readonly metrics: Metrics;
  private draining = false;
  private readonly models: Map<string, ServedModel>;
  private readonly maxBody: number;

  constructor(
    models: ServedModel[],
    private readonly version: string,
    private readonly opts: ServerOptions = {},
  ) {
    this.models = new Map(models.map((m) => [m.name, m]));
    this.maxBody = opts.maxBodyBytes ?? DEFAULT_MAX_BODY;
    this.metrics = new Metrics(() => Object.fromEntries(models.map((m) => [m.name, m.queueDepth])));
    const timeout = opts.requestTimeoutMs ?? 30_000;
    this.http = http.createServer(
      { requestTimeout: timeout, headersTimeout: Math.min(timeout, 10_000), connectionsCheckingInterval: 1000 },
      (req, res) => {
        void this.handle(req, res);
      },
    );
    // node drops a CONNECT without a word unless someone listens: answer it as any other method not allowed.
    this.http.on("connect", (_req: http.IncomingMessage, socket: Duplex) => {
      socket.on("error", () => {});
      socket.end("HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD, POST\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    });
    // A client that stops reading its answer (or sends nothing on an open connection) is dropped too.
    this.http.setTimeout(timeout);
    this.http.keepAliveTimeout = 5000;
  }

  /** Listens; resolves with the base URL. */
  listen(port: number, host: string): Promise<string> {
    return new Promise((done, fail) => {
      const onError = (err: NodeJS.ErrnoException) => {
        const why = err.code === "EADDRINUSE" ? `port ${port} is in use (try --port 0 for a free one)` : err.message;
        fail(new VggError(`cannot listen on ${host}:${port}: ${why}`));
      };
      this.http.once("error", onError);
      this.http.listen(port, host, () => {
        this.http.off("error", onError);
        const a = this.http.address() as AddressInfo;
        done(`http://${a.family === "IPv6" ? `[${a.address}]` : a.address}:${a.port}`);
      });
    });
  }

  /** Stops accepting, answers what is queued and running, releases the sessions. */
  async shutdown(): Promise<void> {
    this.draining = true;
    const closed = new Promise<void>((r) => this.http.close(() => r()));
    this.http.closeIdleConnections();
    await Promise.all([...this.models.values()].map((m) => m.close()));
    this.http.closeIdleConnections();
    await closed;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const t0 = performance.now();
    const url = (req.url ?? "/").replace(/[?#].*$/, "");
    const route = routeOf(url);
    // The idle timeout drops a client that stops sending or reading, not one whose request waits its turn in the
    // queue (no bytes move meanwhile): without this listener node destroys the socket and the answer is lost.
    let replying = false;
    res.on("timeout", () => {
      if (!req.complete || replying) res.destroy();
    });
    let reply: Reply;
    try {
      reply = await this.answer(req, route, url);
    } catch (err) {
      reply = errorReply(err);
    }
    replying = true;
    if (this.draining) reply.headers = { ...reply.headers, Connection: "close" };
    // Past a refused body the rest of it is not read: the connection cannot carry another request.
    if (reply.status === 413) reply.headers = { ...reply.headers, Connection: "close" };
    const body = typeof reply.body === "string" ? Buffer.from(reply.body) : reply.body;
    if (!res.headersSent && !res.destroyed) {
      res.writeHead(reply.status, { "Content-Length": String(body.length), ...reply.headers });
      res.end(req.method === "HEAD" ? undefined : body);
    }
    // Labelled by served models only: a label per name in the URL would let any client grow the metrics without bound.
    const model = route.model !== undefined && this.models.has(route.model) ? route.model : "";
    this.metrics.request(model, route.endpoint, reply.status, (performance.now() - t0) / 1000);
  }

  private async answer(req: http.IncomingMessage, route: Route, url: string): Promise<Reply> {
    // Bound to loopback, answer loopback names only: a DNS-rebound name must not reach the models.
    const local = this.http.address() as AddressInfo | null;
    const hostname = (req.headers.host ?? "").replace(/:\d+$/, "").toLowerCase();
    if (local && ["127.0.0.1", "::1"].includes(local.address) && !LOOPBACK.has(hostname))
      return json(421, { error: "misdirected request" });
    if (this.draining) return json(503, { error: "the server is shutting down" });
    const post = route.endpoint === "infer" || route.endpoint === "classify";
    if (route.endpoint === "unknown") return json(404, { error: `no such endpoint: ${url.slice(0, 200)}` });
    if (post ? req.method !== "POST" : req.method !== "GET" && req.method !== "HEAD") {
      return json(405, { error: `${req.method} is not allowed here` }, { Allow: post ? "POST" : "GET, HEAD" });
    }
    const model = route.model === undefined ? undefined : this.models.get(route.model);
    if (route.model !== undefined && !model) return json(404, { error: `no model named '${route.model}'` });
    if (route.version !== undefined && route.version !== "1")
      return json(404, { error: `model '${route.model}' has no version '${route.version}' (it has 1)` });
    switch (route.endpoint) {
      case "live":
        return json(200, { live: true });
      case "ready": {
        const ready = [...this.models.values()].every((m) => m.ready);
        return json(ready ? 200 : 503, { ready });
      }
      case "server":
        return json(200, { name: SERVER_NAME, version: this.version, extensions: ["binary_tensor_data", "classify"] });
      case "metrics":
        return { status: 200, body: this.metrics.text(), headers: { "Content-Type": "text/plain; version=0.0.4" } };
      case "model": {
        const m = model as ServedModel;
        return json(200, { name: m.name, versions: ["1"], platform: m.platform, inputs: m.inputs, outputs: m.outputs });
      }
      case "model-ready": {
        const m = model as ServedModel;
        return json(m.ready ? 200 : 503, { name: m.name, ready: m.ready });
      }
      case "infer": {
        const m = model as ServedModel;
        const body = await readBody(req, this.maxBody);
        const header = req.headers["inference-header-content-length"];
        const request = parseInferRequest(body, Array.isArray(header) ? header[0] : header);
        const outputs = await m.infer(request);
        const r = encodeInferResponse(m.name, request.id, outputs);
        return { status: 200, body: r.body, headers: r.headers };
      }
      case "classify": {
        const m = model as ServedModel;
        const top = topOf(req.url ?? "", this.opts.top ?? 5);
        const body = await readBody(req, this.maxBody);
        if (body.length === 0) throw new ProtocolError("the body is empty: send an image (JPEG, PNG, WebP)");
        return json(200, { model_name: m.name, top: await m.classifyImage(body, top) });
      }
    }
  }
}

interface Route {
  endpoint: "live" | "ready" | "server" | "metrics" | "model" | "model-ready" | "infer" | "classify" | "unknown";
  model?: string;
  version?: string;
}

/** The endpoint a path names (model names are URL-decoded). */
export function routeOf(url: string): Route {
  if (url === "/v2/health/live") return { endpoint: "live" };
  if (url === "/v2/health/ready") return { endpoint: "ready" };
  if (url === "/v2" || url === "/v2/") return { endpoint: "server" };
  if (url === "/metrics") return { endpoint: "metrics" };
  const m = /^\/v2\/models\/([^/]+)(?:\/versions\/([^/]+))?(\/ready|\/infer|\/classify)?$/.exec(url);
  if (!m) return { endpoint: "unknown" };
  let model: string;
  try {
    model = decodeURIComponent(m[1]);
  } catch {
    return { endpoint: "unknown" };
  }
  const tail = { "/ready": "model-ready", "/infer": "infer", "/classify": "classify" } as const;
  return { endpoint: m[3] ? tail[m[3] as keyof typeof tail] : "model", model, version: m[2] };
}

function topOf(url: string, dflt: number): number {
  const q = new URLSearchParams(url.includes("?") ? url.slice(url.indexOf("?") + 1) : "").get("top");
  if (q === null) return dflt;
  if (!/^\d+$/.test(q) || Number(q) < 1) throw new ProtocolError(`top=${q.slice(0, 20)}: want a positive integer`);
  return Number(q);
}

/** The request body, refused with 413 past `limit` bytes (by its Content-Length, or as it streams in). */
function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers["content-length"]);
  if (Number.isFinite(declared) && declared > limit)
    return Promise.reject(new ProtocolError(`the body is ${declared} bytes, over the limit of ${limit}`, 413));
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.removeAllListeners("data");
        req.pause();
        reject(new ProtocolError(`the body is over the limit of ${limit} bytes`, 413));
        return;
      }
      parts.push(chunk);
    });
    req.on("end", () => resolve(Buffer.concat(parts, size)));
    req.on("error", reject);
    req.on("close", () => {
      if (!req.complete) reject(new ProtocolError("the client closed the connection mid-body", 400));
    });
  });
}

function errorReply(err: unknown): Reply {
  if (err instanceof ProtocolError) return json(err.status, { error: err.message });
  if (err instanceof QueueFull) return json(429, { error: `${err.message}: retry later` }, { "Retry-After": "1" });
  const message = err instanceof Error ? err.message : String(err);
  return json(500, { error: message.split("\n")[0].slice(0, 500) });
}
