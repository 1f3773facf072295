/** Shared by the `vgg serve` tests: a small model on disk, the real server as a child process, and requests to it. */
import { type ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import { encodeInferenceGraph } from "../src/graph/infer.js";
import { initWeights } from "../src/weights/init.js";
import { buildModel, type ModelOptions } from "../src/zoo/model.js";
import { BIN } from "./helpers.js";

/** vgg11 at width /16 with a compact head: 10 classes of 3x32x32 by default, 1.9 MB. */
export function exportToy(file: string, opts: ModelOptions = {}, taps = ["logits"]): void {
  const m = buildModel("vgg11", { widthDivisor: 16, numClasses: 10, inputSize: 32, head: "compact", ...opts });
  fs.writeFileSync(file, encodeInferenceGraph(m, initWeights(m, "torchvision", 1), { taps }));
}

export interface Served {
  /** http://127.0.0.1:PORT */
  base: string;
  proc: ChildProcess;
  output: () => string;
  /** Sends `signal` and resolves with the exit code. */
  stop: (signal?: NodeJS.Signals) => Promise<number | null>;
}

/** Starts `vgg serve ARGS --port 0` and resolves once it prints that its models are ready. */
export function startServe(args: string[], timeoutMs = 60_000): Promise<Served> {
  const proc = spawn(process.execPath, [BIN, "serve", ...args, "--port", "0"], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  proc.stderr.setEncoding("utf8").on("data", (s: string) => (err += s));
  const exited = new Promise<number | null>((r) => proc.on("exit", (code) => r(code)));
  const stop = (signal: NodeJS.Signals = "SIGTERM") => {
    if (proc.exitCode === null) proc.kill(signal);
    return exited;
  };
  return new Promise((done, fail) => {
    const timer = setTimeout(() => {
      proc.kill("SIGKILL");
      fail(new Error(`vgg serve did not get ready: ${out} ${err}`));
    }, timeoutMs);
    proc.on("exit", () => {
      clearTimeout(timer);
      fail(new Error(`vgg serve exited: ${out} ${err}`));
    });
    proc.stdout.setEncoding("utf8").on("data", (s: string) => {
      out += s;
      const url = /listening on (http:\/\/\S+)\/v2/.exec(out);
      if (url && /^ready: /m.test(out)) {
        clearTimeout(timer);
        done({ base: url[1], proc, output: () => out + err, stop });
      }
    });
  });
}

/** A row-major float32 input of `rows` samples of 3x32x32, different per seed. */
export function toyInput(rows: number, seed: number, per = 3 * 32 * 32): Float32Array {
  const x = new Float32Array(rows * per);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < x.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    x[i] = s / 2 ** 32 - 0.5;
  }
  return x;
}

/** The JSON body of an infer request with one input. */
export function inferBody(x: Float32Array, shape: number[], name = "input", extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ inputs: [{ name, shape, datatype: "FP32", data: Array.from(x) }], ...extra });
}

/** POSTs an infer request; resolves with the status and the parsed JSON. */
export async function infer(base: string, model: string, body: string): Promise<{ status: number; json: Record<string, unknown> }> {
  const r = await fetch(`${base}/v2/models/${model}/infer`, { method: "POST", body, headers: { "Content-Type": "application/json" } });
  return { status: r.status, json: (await r.json()) as Record<string, unknown> };
}

/** The first output's data of a JSON infer response. */
export function firstOutput(json: Record<string, unknown>): { shape: number[]; data: number[] } {
  return (json.outputs as { shape: number[]; data: number[] }[])[0];
}
