/**
 * The browser twin of `ort.ts`: the one module of the web build that imports ONNX Runtime (onnxruntime-web), behind
 * the same `Session` interface (session.ts), with what the two share in adapter.ts. WebGPU where the browser has an
 * adapter, WASM otherwise; the WASM backend is multi-threaded when the page is cross-origin isolated (COOP
 * same-origin + COEP require-corp), since its threads need SharedArrayBuffer.
 *
 * The web build resolves `onnxruntime-web` with the `onnxruntime-web-use-extern-wasm` condition (ort.min.mjs): ORT's
 * glue (.mjs) and binary (.wasm) are then loaded from `wasmPaths` on the page's own origin, never from a CDN, and
 * its worker threads start from that .mjs file rather than from the bundle.
 */
import * as ort from "onnxruntime-web";
import { VggError } from "../errors.js";
import { adaptSession, firstLine, loadModel, ortOptions } from "./adapter.js";
import type { Session, SessionOptions } from "./session.js";

export type { Session, SessionOptions };

export type Backend = "webgpu" | "wasm";

export interface WebSessionOptions extends SessionOptions {
  /** "auto" (default): WebGPU when an adapter is available, WASM otherwise or when WebGPU fails to load the model. */
  backend?: Backend | "auto";
}

export interface WebSession extends Session {
  /** The backend the session runs on. */
  readonly backend: Backend;
  /** Why WebGPU was not used, when "auto" ended on WASM. */
  readonly fallbackReason?: string;
}

export interface RuntimeInfo {
  /** WASM threads (1 unless the page is cross-origin isolated). */
  threads: number;
  crossOriginIsolated: boolean;
  version: string;
}

interface BrowserGlobals {
  crossOriginIsolated?: boolean;
  navigator?: { hardwareConcurrency?: number; gpu?: { requestAdapter(): Promise<unknown> } };
}
const G = globalThis as BrowserGlobals;

let configured: RuntimeInfo | undefined;

/**
 * Sets where ORT's .mjs/.wasm files are (a URL prefix on this origin, ending in "/") and the WASM thread count
 * (default: every core, at most 4, when cross-origin isolated; else 1). Call once, before the first session.
 */
export function configureRuntime(opts: { wasmPaths: string; threads?: number }): RuntimeInfo {
  const isolated = G.crossOriginIsolated === true;
  const cores = G.navigator?.hardwareConcurrency ?? 1;
  const threads = isolated ? Math.max(1, Math.min(opts.threads ?? Math.min(4, cores), 16)) : 1;
  ort.env.wasm.wasmPaths = opts.wasmPaths;
  ort.env.wasm.numThreads = threads;
  ort.env.logLevel = "error";
  configured = { threads, crossOriginIsolated: isolated, version: ort.env.versions?.web ?? ort.env.versions?.common ?? "unknown" };
  return configured;
}

/** Whether the browser offers a WebGPU adapter (headless Chromium with --disable-gpu does not). */
export async function hasWebGpu(): Promise<boolean> {
  const gpu = G.navigator?.gpu;
  if (!gpu) return false;
  try {
    return (await gpu.requestAdapter()) != null;
  } catch {
    return false;
  }
}

function open(model: Uint8Array | string, backend: Backend, opts: SessionOptions): Promise<ort.InferenceSession> {
  return loadModel(ort, model, { executionProviders: [backend], ...ortOptions(opts) });
}

/** Create a session from an ONNX model in memory or at a URL. */
export async function createSession(model: Uint8Array | string, opts: WebSessionOptions = {}): Promise<WebSession> {
  if (!configured) throw new VggError("configureRuntime() must be called before the first session");
  const want = opts.backend ?? "auto";
  let backend: Backend = want === "auto" ? ((await hasWebGpu()) ? "webgpu" : "wasm") : want;
  let fallbackReason: string | undefined = want === "auto" && backend === "wasm" ? "no WebGPU adapter" : undefined;
  let s: ort.InferenceSession;
  try {
    s = await open(model, backend, opts);
  } catch (err) {
    if (want !== "auto" || backend !== "webgpu") throw new VggError(`ONNX Runtime could not load the model: ${firstLine(err)}`);
    fallbackReason = `WebGPU failed: ${firstLine(err)}`;
    backend = "wasm";
    try {
      s = await open(model, backend, opts);
    } catch (err2) {
      throw new VggError(`ONNX Runtime could not load the model: ${firstLine(err2)}`);
    }
  }
  return { backend, fallbackReason, ...adaptSession(ort, s) };
}
