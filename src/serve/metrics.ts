/**
 * GET /metrics in Prometheus's text format (version 0.0.4): requests by model, endpoint and status, request latency,
 * batch sizes and queue depth. Counters and histograms only grow; the queue depth is read when scraped.
 */

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128];

class Histogram {
  readonly counts: number[];
  sum = 0;
  count = 0;
  constructor(readonly buckets: number[]) {
    this.counts = buckets.map(() => 0);
  }
  observe(v: number): void {
    this.sum += v;
    this.count++;
    for (let i = 0; i < this.buckets.length; i++) if (v <= this.buckets[i]) this.counts[i]++;
  }
}

const label = (v: string) => v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
const labels = (l: Record<string, string>) =>
  `{${Object.entries(l)
    .map(([k, v]) => `${k}="${label(v)}"`)
    .join(",")}}`;

export class Metrics {
  private readonly requests = new Map<string, { l: Record<string, string>; n: number }>();
  private readonly latency = new Map<string, { l: Record<string, string>; h: Histogram }>();
  private readonly batches = new Map<string, Histogram>();

  constructor(private readonly queueDepth: () => Record<string, number>) {}

  /** One answered request: `model` is "" for server-wide endpoints. */
  request(model: string, endpoint: string, status: number, seconds: number): void {
    const l = { model, endpoint, status: String(status) };
    const key = JSON.stringify(l);
    const r = this.requests.get(key) ?? { l, n: 0 };
    r.n++;
    this.requests.set(key, r);
    const lk = JSON.stringify([model, endpoint]);
    const h = this.latency.get(lk) ?? { l: { model, endpoint }, h: new Histogram(LATENCY_BUCKETS) };
    h.h.observe(seconds);
    this.latency.set(lk, h);
  }

  batch(model: string, rows: number): void {
    const h = this.batches.get(model) ?? new Histogram(BATCH_BUCKETS);
    h.observe(rows);
    this.batches.set(model, h);
  }

  text(): string {
    const out: string[] = [];
    out.push("# HELP vgg_requests_total Requests answered, by model, endpoint and HTTP status.", "# TYPE vgg_requests_total counter");
    for (const r of this.requests.values()) out.push(`vgg_requests_total${labels(r.l)} ${r.n}`);
    out.push(
      "# HELP vgg_request_duration_seconds Time from a request's arrival to its answer.",
      "# TYPE vgg_request_duration_seconds histogram",
    );
    for (const { l, h } of this.latency.values()) histogram(out, "vgg_request_duration_seconds", l, h);
    out.push("# HELP vgg_batch_size Rows in each batch run.", "# TYPE vgg_batch_size histogram");
    for (const [model, h] of this.batches) histogram(out, "vgg_batch_size", { model }, h);
    out.push("# HELP vgg_queue_depth Requests waiting for a batch.", "# TYPE vgg_queue_depth gauge");
    for (const [model, d] of Object.entries(this.queueDepth())) out.push(`vgg_queue_depth${labels({ model })} ${d}`);
    return `${out.join("\n")}\n`;
  }
}

function histogram(out: string[], name: string, l: Record<string, string>, h: Histogram): void {
  for (let i = 0; i < h.buckets.length; i++) out.push(`${name}_bucket${labels({ ...l, le: String(h.buckets[i]) })} ${h.counts[i]}`);
  out.push(`${name}_bucket${labels({ ...l, le: "+Inf" })} ${h.count}`);
  out.push(`${name}_sum${labels(l)} ${h.sum}`);
  out.push(`${name}_count${labels(l)} ${h.count}`);
}
