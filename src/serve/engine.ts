/**
 * A model's ONNX Runtime session in a worker thread of its own. The Node binding runs a session on the calling
 * thread (its `run` is synchronous behind a promise), so a session on the main thread would stop the server from
 * answering anything, health checks included, for the length of every batch; in a worker it does not. Tensors
 * cross by transfer, not by copy.
 */
import { Worker } from "node:worker_threads";
import { VggError } from "../errors.js";
import type { Device } from "../runtime/device.js";
import type { Compiled } from "../runtime/open-graph.js";
import type { Tensor } from "../tensor.js";

/** What the worker opens: a model file (external data beside it), or a graph compiled in this process. */
export type EngineModel = { file: string } | { compiled: Compiled };

export type ToEngine =
  | { type: "open"; model: EngineModel; threads?: number; device?: Device }
  | { type: "run"; id: number; feeds: Record<string, Tensor> }
  | { type: "close" };

export type FromEngine =
  | { type: "ready"; inputNames: string[]; outputNames: string[] }
  | { type: "result"; id: number; outputs: Record<string, Tensor> }
  | { type: "error"; id: number; message: string; file?: string };

/** The buffers of `tensors` that can move to the other thread (whole buffers only: a view of a larger one is copied). */
export function transferables(tensors: Record<string, Tensor>): ArrayBuffer[] {
  const out: ArrayBuffer[] = [];
  for (const t of Object.values(tensors)) {
    const b = t.data.buffer;
    if (b instanceof ArrayBuffer && t.data.byteOffset === 0 && t.data.byteLength === b.byteLength && !out.includes(b)) out.push(b);
  }
  return out;
}

export class Engine {
  private readonly pending = new Map<number, { resolve: (o: Record<string, Tensor>) => void; reject: (e: Error) => void }>();
  private next = 1;
  private dead: Error | null = null;
  private closing = false;

  private constructor(
    private readonly worker: Worker,
    readonly inputNames: string[],
    readonly outputNames: string[],
  ) {
    worker.on("message", (m: FromEngine) => {
      if (m.type === "ready") return;
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.type === "result") p.resolve(m.outputs);
      else p.reject(new VggError(m.message, m.file));
    });
    worker.on("error", (err) => this.fail(err instanceof Error ? err : new Error(String(err))));
    worker.on("exit", (code) =>
      this.fail(new Error(`the inference thread ${this.closing ? "was closed" : `exited unexpectedly (code ${code})`}`)),
    );
  }

  /** Starts the thread and creates the session there; rejects with ORT's error if the model does not load. */
  static open(model: EngineModel, threads?: number, device?: Device): Promise<Engine> {
    const worker = new Worker(new URL("./worker.js", import.meta.url));
    return new Promise((resolve, reject) => {
      const settle = () => {
        worker.off("message", onMessage);
        worker.off("error", onError);
        worker.off("exit", onExit);
      };
      const onMessage = (m: FromEngine) => {
        settle();
        if (m.type === "ready") resolve(new Engine(worker, m.inputNames, m.outputNames));
        else {
          void worker.terminate();
          const failed = m.type === "error" ? m : { message: "the inference thread did not start", file: undefined };
          reject(new VggError(failed.message, failed.file));
        }
      };
      const onError = (err: Error) => {
        settle();
        reject(err);
      };
      const onExit = (code: number) => {
        settle();
        reject(new Error(`the inference thread exited while loading the model (code ${code})`));
      };
      worker.on("message", onMessage);
      worker.on("error", onError);
      worker.on("exit", onExit);
      worker.postMessage({ type: "open", model, threads, device } satisfies ToEngine);
    });
  }

  private fail(err: Error): void {
    this.dead ??= err;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  /** Runs the session on `feeds` (their buffers move to the thread: do not use them after). */
  run(feeds: Record<string, Tensor>): Promise<Record<string, Tensor>> {
    if (this.dead) return Promise.reject(this.dead);
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ type: "run", id, feeds } satisfies ToEngine, transferables(feeds));
    });
  }

  /** Releases the session and ends the thread (after the runs already posted). */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    const exited = new Promise<void>((r) => this.worker.once("exit", () => r()));
    this.worker.postMessage({ type: "close" } satisfies ToEngine);
    const timer = setTimeout(() => void this.worker.terminate(), 10_000);
    await exited;
    clearTimeout(timer);
  }
}
