/** Worker threads that decode and preprocess images for `vgg predict` while the engine runs. */
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { loadSharp } from "../data/folder.js";
import type { Preprocessing } from "../data/preprocessing.js";
import type { Image } from "../data/transforms.js";
import { VggError } from "../errors.js";

export interface DecodeRequest {
  id: number;
  file: string;
  preprocessing: Preprocessing;
}

export type DecodeReply =
  | { id: number; data: Float32Array; c: number; h: number; w: number }
  | { id: number; error: string; file?: string; internal?: boolean };

const WORKER_URL = new URL("./decode-worker.js", import.meta.url);

export class DecodePool {
  private readonly workers: Worker[] = [];
  private readonly pending = new Map<number, { resolve: (i: Image) => void; reject: (e: Error) => void; w: Worker }>();
  private nextId = 1;
  private dead: Error | null = null;

  private constructor(n: number) {
    for (let k = 0; k < n; k++) {
      const w = new Worker(WORKER_URL);
      w.unref();
      w.on("message", (r: DecodeReply) => {
        const p = this.pending.get(r.id);
        if (!p) return;
        this.pending.delete(r.id);
        if (![...this.pending.values()].some((q) => q.w === w)) w.unref();
        if ("data" in r) p.resolve({ data: r.data, c: r.c, h: r.h, w: r.w });
        else if (r.internal) p.reject(new Error(`decode worker: ${r.error}`));
        else p.reject(new VggError(r.file ? r.error.slice(r.file.length + 2) : r.error, r.file));
      });
      const fail = (e: Error) => {
        this.dead ??= e;
        for (const [id, p] of this.pending) {
          if (p.w !== w) continue;
          this.pending.delete(id);
          p.reject(e);
        }
      };
      w.on("error", fail);
      w.on("exit", (code) => fail(new Error(`decode worker exited (code ${code})`)));
      this.workers.push(w);
    }
  }

  static async create(n: number): Promise<DecodePool> {
    if (!existsSync(fileURLToPath(WORKER_URL)))
      throw new VggError(`decode worker ${fileURLToPath(WORKER_URL)} is missing (run npm run build)`);
    // sharp's native module must be loaded by the main thread before a worker loads it.
    await loadSharp();
    return new DecodePool(n);
  }

  decode(file: string, preprocessing: Preprocessing): Promise<Image> {
    if (this.dead) return Promise.reject(this.dead);
    // The least busy worker.
    const load = (w: Worker) => [...this.pending.values()].filter((p) => p.w === w).length;
    const w = this.workers.reduce((a, b) => (load(b) < load(a) ? b : a));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      w.ref();
      this.pending.set(id, { resolve, reject, w });
      w.postMessage({ id, file, preprocessing } satisfies DecodeRequest);
    });
  }

  async close(): Promise<void> {
    this.dead ??= new VggError("the decode pool was closed");
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
