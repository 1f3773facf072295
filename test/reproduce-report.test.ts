/**
 * `vgg reproduce`'s reports from a fixture: the Markdown tables with the paper's numbers beside ours, the HTML page's
 * escaping and self-containment, and the page in Debian's Chromium from file:// with the network blocked (charts drawn,
 * canvases not blank, screenshot in test-output/). The browser part is skipped without /usr/bin/chromium.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { join } from "node:path";
import { after, test } from "node:test";
import sharp from "sharp";
import { CHART_COUNT, renderHtml, scriptJson } from "../src/reproduce/html.js";
import { renderMarkdown } from "../src/reproduce/markdown.js";
import { PAPER_ROWS } from "../src/reproduce/paper.js";
import type { ConfigName, ConfigResult, ProtocolName, ReproduceResults } from "../src/reproduce/results.js";
import { ROOT, tmp } from "./helpers.js";
import { chromiumSkip, openReport } from "./report-browser.js";

const OUT = join(ROOT, "test-output");
const HOSTILE = '<b>&"';
const CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", HOSTILE];
const dir = tmp("vgg-report-");

after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A 28x28 grey gradient with a bright square, as a PNG data URL. */
async function pngDataUrl(seed: number): Promise<string> {
  const px = Buffer.alloc(28 * 28);
  for (let y = 0; y < 28; y++)
    for (let x = 0; x < 28; x++) px[y * 28 + x] = Math.abs(x - 14) + Math.abs(y - 14) < 6 + seed ? 230 : (x + y) * 4;
  const png = await sharp(px, { raw: { width: 28, height: 28, channels: 1 } })
    .png()
    .toBuffer();
  return `data:image/png;base64,${png.toString("base64")}`;
}

const SPEC: [ConfigName, string, number, string, string | null][] = [
  ["A", "vgg11", 11, "32", null],
  ["A-LRN", "vgg11_lrn", 11, "32", null],
  ["B", "vgg13", 13, "32", "A: conv1-4, fc"],
  ["C", "vgg16_1x1", 16, "32", "A: conv1-4, fc"],
  ["D", "vgg16", 16, "32:48", "A: conv1-4, fc"],
  ["E", "vgg19", 19, "32:48", "A: conv1-4, fc"],
];

/** Error rates that grow with the row, so every table cell differs and is easy to find. */
async function fixture(): Promise<ReproduceResults> {
  const png = [await pngDataUrl(0), await pngDataUrl(3)];
  const configs: ConfigResult[] = SPEC.map(([name, arch, depth, trainScale, initFrom], i) => {
    const jittered = trainScale.includes(":");
    const q = jittered ? 40 : 32;
    const multi = jittered ? [32, 40, 48] : [28, 32, 36];
    const ev = (protocol: ProtocolName, scales: number[], k: number) => {
      const top1Error = 0.08 + 0.002 * i + 0.0005 * k;
      return {
        protocol,
        scales,
        n: 1000,
        top1: 1 - top1Error,
        top5: 0.995,
        top1Error,
        top5Error: 0.005 + 0.0001 * k,
        loss: 0.3,
        seconds: 4,
      };
    };
    return {
      name,
      arch,
      depth,
      params: 1_000_000 + 10_000 * i,
      trainScale,
      initFrom,
      trainSeconds: 300 + i,
      epochs: [1, 2, 3, 4].map((epoch) => ({
        epoch,
        lr: 0.05 / epoch,
        trainLoss: 1.2 / epoch + 0.05 * i,
        trainTop1: 0.7 + 0.05 * epoch,
        valLoss: 0.5 / epoch,
        valTop1: 0.75 + 0.04 * epoch - 0.01 * i,
        seconds: 60,
      })),
      evals: [
        ev("single", [q], 0),
        ev("single", multi, 1),
        ev("dense", multi, 2),
        ev("multicrop", multi, 3),
        ev("dense+multicrop", multi, 4),
      ],
      confusion: CLASSES.map((_, t) => CLASSES.map((_, p) => (t === p ? 90 - t : (t + 2 * p + i) % 4))),
      worst: [
        { index: 17, label: 9, predicted: 2, confidence: 0.991, png: png[0] },
        { index: 42 + i, label: 6, predicted: 0, confidence: 0.95, png: png[1] },
      ],
    };
  });
  return {
    version: 1,
    created: "2025-01-02T03:04:05.000Z",
    command: "vgg reproduce --data fashion-mnist --budget-minutes 60",
    data: "fashion-mnist",
    classes: CLASSES,
    settings: {
      widthDivisor: 8,
      head: "compact",
      batchNorm: true,
      inputSize: 32,
      epochs: 4,
      batchSize: 128,
      lr: 0.05,
      seed: 1,
      budgetMinutes: 60,
      testImages: 1000,
    },
    wallSeconds: 3725,
    configs,
    findings: [
      { id: "depth", question: "Does depth help?", paper: "Yes: error falls from A to E.", ours: "No: A 8.00% < E 9.00%.", agrees: false },
      { id: "jitter", question: "Does scale jittering help?", paper: "Yes.", ours: "Too close to call.", agrees: null },
    ],
    paper: PAPER_ROWS,
  };
}

const results = fixture();

test("Markdown: a row per config in each table, with the paper's number of the same kind", async () => {
  const md = renderMarkdown(await results);
  const section = (title: string) => md.split("\n## ").find((s) => s.startsWith(title)) ?? "";
  const single = section("Single test scale");
  // A: fixed S, one scale, error 8.00 / 0.50; the paper's Table 3 row for A at S = 256.
  assert.match(single, /^\| A \| 11 \| 32 \| 32 \| 8\.00 \| 0\.50 \| 29\.6 \/ 10\.4 \(T3: S 256, Q 256\) \|$/m);
  assert.match(single, /^\| A-LRN \| 11 \| 32 \| 32 \| 8\.20 \| 0\.50 \| 29\.7 \/ 10\.5 /m);
  assert.match(single, /^\| B \| 13 \| 32 \| 32 \| 8\.40 \| 0\.50 \| 28\.7 \/ 9\.9 /m);
  assert.match(single, /^\| C \| 16 \| 32 \| 32 \| 8\.60 \| 0\.50 \| 28\.1 \/ 9\.4 \(T3: S 256, Q 256\)/m);
  // D and E are jittered: the paper's 256:512 rows, not its fixed-scale ones.
  assert.match(single, /^\| D \| 16 \| 32:48 \| 40 \| 8\.80 \| 0\.50 \| 25\.6 \/ 8\.1 \(T3: S 256:512, Q 384\) \|$/m);
  assert.match(single, /^\| E \| 19 \| 32:48 \| 40 \| 9\.00 \| 0\.50 \| 25\.5 \/ 8\.0 /m);

  const multi = section("Multiple test scales");
  assert.match(multi, /^\| A \| 11 \| 32 \| \{28, 32, 36\} \| dense \| 8\.10 \| 0\.52 \| - \|$/m, "Table 4 has no row for A");
  assert.match(multi, /^\| B \| 13 \| 32 \| \{28, 32, 36\} \| dense \| 8\.50 \| 0\.52 \| 28\.2 \/ 9\.6 /m);
  assert.match(multi, /^\| E \| 19 \| 32:48 \| \{32, 40, 48\} \| dense \| 9\.10 \| 0\.52 \| 24\.8 \/ 7\.5 \(T4: /m);
  assert.match(
    multi,
    /^\| C \| 16 \| 32 \| \{28, 32, 36\} \| single \| 8\.65 \| 0\.51 \| - \|$/m,
    "the paper has no multi-scale single rows",
  );

  const protocols = section("Dense vs multi-crop");
  assert.match(protocols, /^\| D \| 16 \| 32:48 \| \{32, 40, 48\} \| multicrop \| 8\.95 \| 0\.53 \| 24\.6 \/ 7\.5 \(T5: /m);
  assert.match(protocols, /^\| E \| 19 \| 32:48 \| \{32, 40, 48\} \| dense\+multicrop \| 9\.20 \| 0\.54 \| 24\.4 \/ 7\.1 \(T5: /m);
  assert.match(protocols, /^\| A \| 11 \| 32 \| \{28, 32, 36\} \| multicrop \| 8\.15 \| 0\.53 \| - \|$/m);
  for (const name of ["A", "A-LRN", "B", "C", "D", "E"])
    for (const [title, rows] of [
      ["Single", 1],
      ["Multiple", 2],
      ["Dense vs", 3],
    ] as const)
      assert.equal(
        section(title)
          .split("\n")
          .filter((l) => l.startsWith(`| ${name} |`)).length,
        rows,
        `${title} rows for ${name}`,
      );

  assert.match(
    md,
    /- \*\*Does depth help\?\*\* Agrees: no\.\n {2}- paper: Yes: error falls from A to E\.\n {2}- ours: No: A 8\.00% < E 9\.00%\./,
  );
  // A result without the reason (results.json written before it existed) reads as plainly undecided.
  assert.match(md, /\*\*Does scale jittering help\?\*\* Agrees: not decided\.\n/);
  assert.doesNotMatch(md, /Warning/, "every net is far above chance");
  assert.match(md, /- wall time: 62\.1 min/);
  assert.match(md, /vgg reproduce --data fashion-mnist --budget-minutes 60/);
});

test("HTML: self-contained, strings escaped, chart JSON cannot end its script element", async () => {
  const r = await results;
  const html = renderHtml({ ...r, data: "mnist</script><script>window.pwned=1</script><!--", command: "vgg reproduce </pre>&" });
  assert.doesNotMatch(html, /\b(src|href)\s*=\s*["']?\s*(https?:)?\/\//i, "a remote script, link or image");
  assert.doesNotMatch(html, /<link\b/i);
  for (const m of html.matchAll(/<img [^>]*src="([^"]*)"/g)) assert.match(m[1], /^data:image\/png;base64,/);
  assert.equal((html.match(/<script\b/gi) ?? []).length, 3, "the chart data, Chart.js, the drawing code");
  assert.equal((html.match(/<\/script>/gi) ?? []).length, 3);
  assert.doesNotMatch(html, /window\.pwned=1<\/script>/);
  assert.ok(html.includes("mnist&lt;/script&gt;&lt;script&gt;window.pwned=1&lt;/script&gt;&lt;!--"));
  assert.ok(html.includes("vgg reproduce &lt;/pre&gt;&amp;"));
  assert.ok(!html.includes(HOSTILE), "the class name went in raw");
  assert.ok(html.includes("<th>&lt;b&gt;&amp;&quot;</th>"), "confusion matrix header");
  assert.ok(html.includes("true: &lt;b&gt;&amp;&quot;<br>"), "worst-image caption");
  assert.ok(html.includes('<td class="paper">24.4 / 7.1 (T5: S 256:512, Q {256, 384, 512})</td>'));
  assert.equal(scriptJson({ s: "</script><!--\u2028" }), '{"s":"\\u003c/script>\\u003c!--\\u2028"}');
  assert.deepEqual(JSON.parse(scriptJson({ s: "</script><!--" })), { s: "</script><!--" });
});

test("HTML in Chromium from file://, network blocked: every chart drawn, screenshot", { skip: chromiumSkip, timeout: 60_000 }, async () => {
  const file = join(dir, "report.html");
  fs.writeFileSync(file, renderHtml(await results));
  const page = await openReport(file, CHART_COUNT, join(OUT, "reproduce-report.png"));
  assert.deepEqual(
    page.canvases.map((c) => c.id),
    ["chart-val-top1", "chart-train-loss", "chart-top1-error"],
  );
  for (const c of page.canvases)
    assert.ok(c.w > 100 && c.h > 100 && c.n > 0.01 * c.w * c.h, `canvas ${c.id} looks blank: ${JSON.stringify(c)}`);
  assert.equal(page.images.length, 12);
  assert.ok(
    page.images.every((w) => w === 28),
    `undecoded images: ${page.images}`,
  );
  assert.deepEqual(page.blocked, [], "the page asked the network for something");
  assert.deepEqual(page.errors, []);
});
