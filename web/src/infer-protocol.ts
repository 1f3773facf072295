/** The messages between the demo page (main.ts) and its inference thread (infer-worker.ts). */
import type { Tensor } from "../../src/tensor.js";

export type ToInfer =
  | { type: "open"; id: number; wasmPaths: string; model: ArrayBuffer; freeDimensions?: Record<string, number> }
  | { type: "run"; id: number; feeds: Record<string, Tensor> };

export type FromInfer =
  | { type: "ready"; id: number; backend: string; fallbackReason?: string; threads: number; version: string; crossOriginIsolated: boolean }
  | { type: "outputs"; id: number; outputs: Record<string, Tensor> }
  | { type: "error"; id: number; message: string };

/** The page's side: one request, one answer. */
export class InferClient {
  private readonly worker = new Worker(new URL("./infer-worker.js", import.meta.url), { type: "module" });
  private readonly pending = new Map<number, { resolve: (m: FromInfer) => void; reject: (e: Error) => void }>();
  private next = 1;
  constructor() {
    this.worker.onmessage = (ev: MessageEvent<FromInfer>) => {
      const p = this.pending.get(ev.data.id);
      if (!p) return;
      this.pending.delete(ev.data.id);
      if (ev.data.type === "error") p.reject(new Error(ev.data.message));
      else p.resolve(ev.data);
    };
  }
  private ask(m: ToInfer, transfer: Transferable[]): Promise<FromInfer> {
    return new Promise((resolve, reject) => {
      this.pending.set(m.id, { resolve, reject });
      this.worker.postMessage(m, transfer);
    });
  }
  async open(wasmPaths: string, model: ArrayBuffer, freeDimensions?: Record<string, number>) {
    const r = await this.ask({ type: "open", id: this.next++, wasmPaths, model, freeDimensions }, [model]);
    if (r.type !== "ready") throw new Error("the inference thread did not start");
    return r;
  }
  async run(feeds: Record<string, Tensor>): Promise<Record<string, Tensor>> {
    const r = await this.ask(
      { type: "run", id: this.next++, feeds },
      Object.values(feeds).map((t) => t.data.buffer as ArrayBuffer),
    );
    if (r.type !== "outputs") throw new Error("the inference thread gave no outputs");
    return r.outputs;
  }
}
