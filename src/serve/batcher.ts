/**
 * Dynamic batching, as Triton's dynamic batcher does it: requests that arrive within `maxDelayMs` of the oldest one
 * waiting are run as one batch of up to `maxBatch` rows (a request larger than that runs alone), one batch at a time
 * per model. Every input is concatenated along its first (batch) axis and every output split back, so each request
 * gets the rows it sent. The queue is bounded: past `maxQueue` waiting requests, `submit` refuses at once.
 */
import { numel, type Tensor, type TypedData } from "../tensor.js";

export interface BatcherOptions {
  maxBatch: number;
  maxDelayMs: number;
  maxQueue: number;
}

/** One request: `rows` samples in each of its inputs, all with the batch axis first. */
interface Job {
  rows: number;
  inputs: Record<string, Tensor>;
  enqueued: number;
  resolve: (outputs: Record<string, Tensor>) => void;
  reject: (err: Error) => void;
}

/** Thrown by submit() when the queue is full (the server answers 429). */
export class QueueFull extends Error {
  constructor(readonly depth: number) {
    super(`the queue is full (${depth} requests waiting)`);
    this.name = "QueueFull";
  }
}

export type RunBatch = (inputs: Record<string, Tensor>) => Promise<Record<string, Tensor>>;

export class Batcher {
  private readonly queue: Job[] = [];
  private busy = false;
  private timer: NodeJS.Timeout | null = null;
  private idle: (() => void)[] = [];

  constructor(
    private readonly runBatch: RunBatch,
    readonly opts: BatcherOptions,
    /** Called with each batch's size in rows, as it starts. */
    private readonly onBatch: (rows: number) => void = () => {},
  ) {}

  /** Requests waiting (not counting the batch running). */
  get depth(): number {
    return this.queue.length;
  }

  /** Queues a request; resolves with its own rows of every output. */
  submit(rows: number, inputs: Record<string, Tensor>): Promise<Record<string, Tensor>> {
    if (this.queue.length >= this.opts.maxQueue) return Promise.reject(new QueueFull(this.queue.length));
    return new Promise((resolve, reject) => {
      this.queue.push({ rows, inputs, enqueued: performance.now(), resolve, reject });
      this.schedule();
    });
  }

  /** Resolves once nothing is queued or running. */
  drained(): Promise<void> {
    if (!this.busy && this.queue.length === 0) return Promise.resolve();
    return new Promise((r) => this.idle.push(r));
  }

  private schedule(): void {
    if (this.busy || this.queue.length === 0) return;
    const queuedRows = this.queue.reduce((n, j) => n + j.rows, 0);
    const waited = performance.now() - this.queue[0].enqueued;
    if (queuedRows >= this.opts.maxBatch || waited >= this.opts.maxDelayMs) {
      if (this.timer) clearTimeout(this.timer);
      this.timer = null;
      void this.runNext();
    } else if (!this.timer) {
      this.timer = setTimeout(() => {
        this.timer = null;
        this.schedule();
      }, this.opts.maxDelayMs - waited);
    }
  }

  /** The longest run of queued requests, oldest first, that fits in maxBatch rows (at least one request). */
  private take(): Job[] {
    const jobs = [this.queue.shift() as Job];
    let rows = jobs[0].rows;
    while (this.queue.length > 0 && rows + this.queue[0].rows <= this.opts.maxBatch) {
      const j = this.queue.shift() as Job;
      rows += j.rows;
      jobs.push(j);
    }
    return jobs;
  }

  private async runNext(): Promise<void> {
    this.busy = true;
    const jobs = this.take();
    try {
      const rows = jobs.reduce((n, j) => n + j.rows, 0);
      this.onBatch(rows);
      const outputs = await this.runBatch(
        jobs.length === 1
          ? jobs[0].inputs
          : concatRows(
              jobs.map((j) => j.inputs),
              rows,
            ),
      );
      if (jobs.length === 1) jobs[0].resolve(outputs);
      else {
        let at = 0;
        for (const j of jobs) {
          j.resolve(sliceRows(outputs, at, j.rows));
          at += j.rows;
        }
      }
    } catch (err) {
      for (const j of jobs) j.reject(err instanceof Error ? err : new Error(String(err)));
    } finally {
      this.busy = false;
      if (this.queue.length === 0) for (const r of this.idle.splice(0)) r();
      this.schedule();
    }
  }
}

/** The inputs of several requests as one batch: each input's rows, request after request. */
export function concatRows(parts: Record<string, Tensor>[], rows: number): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  for (const name of Object.keys(parts[0])) {
    const first = parts[0][name];
    const ctor = first.data.constructor as new (n: number) => TypedData;
    const data = new ctor(parts.reduce((n, p) => n + p[name].data.length, 0));
    let at = 0;
    for (const p of parts) {
      (data as Float32Array).set(p[name].data as Float32Array, at);
      at += p[name].data.length;
    }
    out[name] = { dtype: first.dtype, shape: [rows, ...first.shape.slice(1)], data };
  }
  return out;
}

/** Rows [at, at + rows) of every output (copies, so one request's answer does not hold the whole batch). */
export function sliceRows(outputs: Record<string, Tensor>, at: number, rows: number): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  for (const [name, t] of Object.entries(outputs)) {
    const per = numel(t.shape.slice(1));
    out[name] = { dtype: t.dtype, shape: [rows, ...t.shape.slice(1)], data: t.data.slice(at * per, (at + rows) * per) };
  }
  return out;
}
