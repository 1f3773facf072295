/**
 * Batches prepared ahead in worker threads. The training step's session.run() blocks the main thread's event
 * loop for its whole duration, so decoding and augmentation must not run there: requests for the next few
 * batches are posted before each batch is handed out, workers build them meanwhile, and finished batches come
 * back as transferred ArrayBuffers (no copy).
 *
 * Everything a batch contains is a function of (seed, epoch, batch index): the epoch order is a permutation
 * keyed by (seed, epoch) and each image's augmentation is keyed by (seed, epoch, image), so a run resumed at
 * (epoch, batch) sees exactly the batches the interrupted run would have seen.
 */
import * as fs from "node:fs";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { VggError } from "../errors.js";
import { keyedRng, permutation, STREAM } from "../random.js";
import { BatchBuilder } from "./batch.js";
import type { Source, Split } from "./dataset.js";
import { loadSharp } from "./folder.js";
import { compileTransforms, type TransformConfig } from "./transforms.js";

export type ToWorker =
  | { type: "init"; source: Source; transforms: TransformConfig | TransformConfig[]; seed: number; shape: [number, number, number] }
  | { type: "batch"; id: number; epoch: number; indices: Int32Array }
  | { type: "close" };

export type FromWorker =
  | { type: "batch"; id: number; x: Float32Array; y: BigInt64Array }
  | { type: "error"; id: number; message: string; file?: string; stack?: string };

export interface LoaderOptions {
  batchSize: number;
  /** A fresh seeded permutation every epoch (default true); false keeps the split's order. */
  shuffle?: boolean;
  /** Leave out the last, smaller batch of an epoch (default false). */
  dropLast?: boolean;
  transforms?: TransformConfig;
  /**
   * Several views of every sample instead of `transforms` (test-time crops and flips, all of one output size):
   * a batch's x holds n * views.length samples, the views of sample k at k * views.length + v.
   */
  views?: TransformConfig[];
  /** Keys the epoch order and the augmentation. Default 0. */
  seed?: number;
  /** Worker threads; 0 builds batches on the calling thread. Default 1 for arrays, 2 for image files. */
  workers?: number;
  /** Batches requested ahead of the one being consumed. Default 2 per worker. */
  prefetch?: number;
}

export interface Position {
  epoch: number;
  batch: number;
}

export interface Batch {
  /** [n, C, H, W] float32. */
  x: Float32Array;
  /** [n] int64 class indices. */
  y: BigInt64Array;
  n: number;
  shape: [number, number, number, number];
  epoch: number;
  /** Batch index within the epoch. */
  index: number;
  /** Where to resume after this batch (a checkpoint taken after training on it). */
  next: Position;
}

interface Pending {
  resolve: (b: { x: Float32Array; y: BigInt64Array }) => void;
  reject: (e: Error) => void;
}

class WorkerHandle {
  readonly pending = new Map<number, Pending>();
  private dead: Error | null = null;
  private closing = false;
  private exited = false;

  constructor(
    readonly worker: Worker,
    init: ToWorker,
  ) {
    // Idle workers must not keep the process alive; busy ones must, or awaiting a batch could end the process.
    worker.unref();
    worker.on("message", (m: FromWorker) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.settle(m.id);
      if (m.type === "batch") p.resolve({ x: m.x, y: m.y });
      else if (m.stack === undefined) p.reject(new VggError(m.message, m.file));
      else {
        const e = new Error(`loader worker: ${m.message}`);
        e.stack = m.stack;
        p.reject(e);
      }
    });
    worker.on("error", (err) => this.kill(err instanceof Error ? err : new Error(String(err))));
    worker.on("exit", (code) => {
      this.exited = true;
      if (!this.closing) this.kill(new Error(`loader worker exited unexpectedly (code ${code})`));
    });
    worker.postMessage(init);
  }

  private settle(id: number): void {
    this.pending.delete(id);
    if (this.pending.size === 0) this.worker.unref();
  }

  private kill(err: Error): void {
    this.dead ??= err;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    this.worker.unref();
  }

  request(id: number, epoch: number, indices: Int32Array): Promise<{ x: Float32Array; y: BigInt64Array }> {
    if (this.dead) return Promise.reject(this.dead);
    return new Promise((resolve, reject) => {
      if (this.pending.size === 0) this.worker.ref();
      this.pending.set(id, { resolve, reject });
      const msg: ToWorker = { type: "batch", id, epoch, indices };
      this.worker.postMessage(msg, [indices.buffer as ArrayBuffer]);
    });
  }

  /** Asks the worker to finish; terminates it if it has not ended after `graceMs`. */
  async close(graceMs: number): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.kill(new VggError("the batch loader was closed"));
    if (this.exited) return;
    const exited = new Promise<void>((resolve) => this.worker.once("exit", () => resolve()));
    // Referenced while closing, or a process with nothing else to do would exit with close() unsettled.
    this.worker.ref();
    this.worker.postMessage({ type: "close" } satisfies ToWorker);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<"late">((resolve) => {
      timer = setTimeout(() => resolve("late"), graceMs);
    });
    if ((await Promise.race([exited, late])) === "late") await this.worker.terminate();
    clearTimeout(timer);
  }
}

const sharedCopies = new WeakMap<Source, Source>();

/** Array pixels in a SharedArrayBuffer, so every worker reads the same memory. */
function shareSource(s: Source): Source {
  if (s.kind === "files" || s.data.buffer instanceof SharedArrayBuffer) return s;
  let c = sharedCopies.get(s);
  if (!c) {
    const data =
      s.data instanceof Uint8Array
        ? new Uint8Array(new SharedArrayBuffer(s.data.byteLength))
        : new Float32Array(new SharedArrayBuffer(s.data.byteLength));
    data.set(s.data);
    c = { ...s, data };
    sharedCopies.set(s, c);
  }
  return c;
}

const WORKER_URL = new URL("./worker.js", import.meta.url);

export class BatchLoader {
  readonly batchSize: number;
  readonly shuffle: boolean;
  readonly dropLast: boolean;
  readonly seed: number;
  readonly transforms: TransformConfig;
  /** Transform views per sample (one, `transforms`, unless LoaderOptions.views is given). */
  readonly views: TransformConfig[];
  /** [C, H, W] of every sample. */
  readonly sampleShape: [number, number, number];
  readonly batchesPerEpoch: number;
  readonly workerCount: number;
  readonly prefetch: number;

  private handles: WorkerHandle[] | null = null;
  private starting: Promise<WorkerHandle[]> | null = null;
  private inline: BatchBuilder | null = null;
  private running = false;
  private closed = false;
  private nextId = 1;
  private cachedOrder: { epoch: number; order: Int32Array } | null = null;

  constructor(
    readonly split: Split,
    opts: LoaderOptions,
  ) {
    const { batchSize } = opts;
    if (!(Number.isInteger(batchSize) && batchSize >= 1)) throw new VggError(`batch size must be a positive integer, not ${batchSize}`);
    this.batchSize = batchSize;
    this.shuffle = opts.shuffle ?? true;
    this.dropLast = opts.dropLast ?? false;
    this.seed = opts.seed ?? 0;
    if (!(Number.isSafeInteger(this.seed) && this.seed >= 0)) throw new VggError(`seed must be a non-negative integer, not ${opts.seed}`);
    if (opts.views && opts.transforms) throw new VggError("loader: give transforms or views, not both");
    if (opts.views && opts.views.length === 0) throw new VggError("loader: empty views");
    this.views = opts.views ?? [opts.transforms ?? {}];
    this.transforms = this.views[0];
    const t = compileTransforms(this.transforms);
    const src = split.source;
    if (src.kind === "array") {
      this.sampleShape = t.outputShape(src.c, src.h, src.w);
    } else if (src.size) {
      // Files of one known size (a folder of small images, padded as arrays are): a file that has changed size
      // since the scan is reported by the batch builder, naming it.
      this.sampleShape = t.outputShape(src.c, src.size[0], src.size[1]);
    } else {
      if (this.transforms.crop === undefined && this.transforms.resize === undefined) {
        throw new VggError("image files differ in size: the transforms need a crop or a resize to make batches");
      }
      this.sampleShape = t.outputShape(src.c, 256, 256);
    }
    const n = split.indices.length;
    this.batchesPerEpoch = this.dropLast ? Math.floor(n / batchSize) : Math.ceil(n / batchSize);
    if (this.batchesPerEpoch === 0) throw new VggError(`the ${split.name} split has ${n} samples, fewer than one batch of ${batchSize}`);
    const w = opts.workers ?? (src.kind === "files" ? 2 : 1);
    if (!(Number.isInteger(w) && w >= 0 && w <= 64)) throw new VggError(`invalid worker count ${opts.workers}`);
    this.workerCount = w;
    this.prefetch = Math.max(1, opts.prefetch ?? 2 * Math.max(1, w));
  }

  /** Split positions (0..length-1) in the order of `epoch`. */
  order(epoch: number): Int32Array {
    if (!(Number.isSafeInteger(epoch) && epoch >= 0)) throw new VggError(`invalid epoch ${epoch}`);
    if (this.cachedOrder?.epoch === epoch) return this.cachedOrder.order;
    const n = this.split.indices.length;
    let order: Int32Array;
    if (this.shuffle) order = permutation(n, keyedRng(this.seed, STREAM.shuffle, epoch));
    else {
      order = new Int32Array(n);
      for (let i = 0; i < n; i++) order[i] = i;
    }
    this.cachedOrder = { epoch, order };
    return order;
  }

  /** Source indices of batch `batch` of `epoch`. */
  batchIndices(epoch: number, batch: number): Int32Array {
    if (!(Number.isInteger(batch) && batch >= 0 && batch < this.batchesPerEpoch)) {
      throw new VggError(`batch ${batch} is out of range (0..${this.batchesPerEpoch - 1})`);
    }
    const order = this.order(epoch);
    const lo = batch * this.batchSize;
    const hi = Math.min(order.length, lo + this.batchSize);
    const out = new Int32Array(hi - lo);
    for (let i = lo; i < hi; i++) out[i - lo] = this.split.indices[order[i]];
    return out;
  }

  /** The position after batch `batch` of `epoch`. */
  after(epoch: number, batch: number): Position {
    return batch + 1 < this.batchesPerEpoch ? { epoch, batch: batch + 1 } : { epoch: epoch + 1, batch: 0 };
  }

  private start(): Promise<WorkerHandle[]> {
    this.starting ??= (async () => {
      if (!fs.existsSync(fileURLToPath(WORKER_URL))) {
        throw new VggError(`loader worker script ${fileURLToPath(WORKER_URL)} is missing (run the compiled build: npm run build)`);
      }
      const source = shareSource(this.split.source);
      // sharp's native module must be loaded by the main thread before any worker loads it.
      if (source.kind === "files") await loadSharp();
      const init: ToWorker = { type: "init", source, transforms: this.views, seed: this.seed, shape: this.sampleShape };
      this.handles = Array.from({ length: this.workerCount }, () => new WorkerHandle(new Worker(WORKER_URL), init));
      return this.handles;
    })();
    return this.starting;
  }

  private request(handles: WorkerHandle[] | null, epoch: number, batch: number): Promise<{ x: Float32Array; y: BigInt64Array }> {
    const indices = this.batchIndices(epoch, batch);
    if (!handles) {
      this.inline ??= new BatchBuilder(this.split.source, this.views, this.seed, this.sampleShape);
      return this.inline.build(epoch, indices);
    }
    let h = handles[0];
    for (const k of handles) if (k.pending.size < h.pending.size) h = k;
    return h.request(this.nextId++, epoch, indices);
  }

  /**
   * Batches from `from` (default the start of epoch 0) to the end of epoch from.epoch + epochs - 1, prepared
   * ahead across epoch boundaries. One iteration at a time per loader.
   */
  async *batches(from: Position = { epoch: 0, batch: 0 }, epochs = 1): AsyncGenerator<Batch, void, undefined> {
    if (this.closed) throw new VggError("the batch loader is closed");
    if (this.running) throw new VggError("this batch loader is already being iterated");
    if (!(Number.isInteger(from.batch) && from.batch >= 0 && from.batch <= this.batchesPerEpoch)) {
      throw new VggError(`resume batch ${from.batch} is out of range (0..${this.batchesPerEpoch})`);
    }
    if (!(Number.isInteger(epochs) && epochs >= 1)) throw new VggError(`epoch count must be a positive integer, not ${epochs}`);
    this.order(from.epoch);
    this.running = true;
    const inflight: { epoch: number; batch: number; result: Promise<{ x: Float32Array; y: BigInt64Array }> }[] = [];
    try {
      const handles = this.workerCount > 0 ? await this.start() : null;
      const end = from.epoch + epochs;
      let pos: Position = from.batch < this.batchesPerEpoch ? from : { epoch: from.epoch + 1, batch: 0 };
      const depth = handles ? this.prefetch : 1;
      const fill = () => {
        while (inflight.length < depth && pos.epoch < end) {
          const result = this.request(handles, pos.epoch, pos.batch);
          // Awaited later, in order; until then a failure must not count as unhandled.
          result.catch(() => {});
          inflight.push({ ...pos, result });
          pos = this.after(pos.epoch, pos.batch);
        }
      };
      fill();
      while (inflight.length > 0) {
        const head = inflight.shift()!;
        const { x, y } = await head.result;
        // Queue the next requests before the consumer takes the thread for its training step.
        if (handles) fill();
        const [C, H, W] = this.sampleShape;
        yield {
          x,
          y,
          n: y.length,
          shape: [y.length * this.views.length, C, H, W],
          epoch: head.epoch,
          index: head.batch,
          next: this.after(head.epoch, head.batch),
        };
        // In-thread building has nothing to overlap with: build the next batch only when it is asked for.
        if (!handles) fill();
      }
    } finally {
      this.running = false;
    }
  }

  /** The batches of one epoch, optionally resuming at batch `fromBatch`. */
  epoch(epoch: number, fromBatch = 0): AsyncGenerator<Batch, void, undefined> {
    return this.batches({ epoch, batch: fromBatch }, 1);
  }

  /** Stops the workers; the loader cannot be used afterwards. Safe to call more than once. */
  async close(): Promise<void> {
    this.closed = true;
    const started = this.starting;
    this.starting = null;
    if (!started) return;
    const handles = await started.catch(() => null);
    this.handles = null;
    if (handles) await Promise.all(handles.map((h) => h.close(10_000)));
  }
}
