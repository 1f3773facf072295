/**
 * `vgg reproduce`'s report.html: one file that opens from disk with no network. Chart.js is read from node_modules
 * at render time and inlined, the chart data goes in as JSON, the images are data URLs already.
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { chanceWarning, verdictText } from "./findings.js";
import { fmtDuration, pct, type ReportTable, resultTables, settingsList, trainingTable } from "./markdown.js";
import type { ConfigResult, ProtocolResult, ReproduceResults } from "./results.js";

/** Charts the page draws: validation top-1, training loss, top-1 error per protocol. */
export const CHART_COUNT = 3;

const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
const ENTITIES: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

export const esc = (s: string | number): string => String(s).replace(/[&<>"']/g, (c) => ENTITIES[c]);

/** JSON safe inside a <script> element: with every `<` as \u003c, no `</script` or `<!--` can end or bend it. */
export const scriptJson = (v: unknown): string =>
  JSON.stringify(v)
    .replace(/</g, "\\u003c")
    .replace(/\u2028/g, "\\u2028")
    .replace(/\u2029/g, "\\u2029");

let chartJs: string | undefined;

/** Chart.js's UMD build. Its package exports do not list the file, so it is found beside the CommonJS entry. */
function chartJsSource(): string {
  if (chartJs === undefined) {
    const file = join(dirname(createRequire(import.meta.url).resolve("chart.js")), "chart.umd.js");
    chartJs = readFileSync(file, "utf8")
      // The map is not shipped with the page; a dangling reference would only make devtools fetch.
      .replace(/\n\/\/# sourceMappingURL=\S*\s*$/, "\n")
      .replace(/<\/script/gi, "<\\/script");
  }
  return chartJs;
}

/** Anything but a base64 PNG data URL is dropped, so an image can neither fetch nor inject. */
const isPngDataUrl = (s: string) => /^data:image\/png;base64,[A-Za-z0-9+/]+=*$/.test(s);

const className = (r: ReproduceResults, k: number) => r.classes[k] ?? `class ${k}`;

/** A protocol plus single or multiple scales: the bars that are comparable across configs. */
const evalKind = (e: ProtocolResult) => `${e.protocol}, ${e.scales.length > 1 ? "multi-scale" : "single-scale"}`;

function lineChart(id: string, title: string, yTitle: string, r: ReproduceResults, y: (c: ConfigResult, k: number) => number | null) {
  return {
    id,
    config: {
      type: "line",
      data: {
        datasets: r.configs.map((c, i) => ({
          label: c.name,
          data: c.epochs.map((p, k) => ({ x: p.epoch, y: y(c, k) })),
          borderColor: COLORS[i % COLORS.length],
          backgroundColor: COLORS[i % COLORS.length],
          spanGaps: true,
        })),
      },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        plugins: { title: { display: true, text: title } },
        scales: {
          x: { type: "linear", title: { display: true, text: "epoch" }, ticks: { stepSize: 1 } },
          y: { title: { display: true, text: yTitle } },
        },
      },
    },
  };
}

function chartSpecs(r: ReproduceResults) {
  const kinds = [...new Set(r.configs.flatMap((c) => c.evals.map(evalKind)))];
  const bars = {
    id: "chart-top1-error",
    wide: true,
    config: {
      type: "bar",
      data: {
        labels: r.configs.map((c) => c.name),
        datasets: kinds.map((kind, i) => ({
          label: kind,
          data: r.configs.map((c) => {
            const e = c.evals.find((x) => evalKind(x) === kind);
            return e ? Number((100 * e.top1Error).toFixed(2)) : null;
          }),
          backgroundColor: COLORS[i % COLORS.length],
        })),
      },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        plugins: { title: { display: true, text: `Test top-1 error (%) per config and protocol, ${r.data}` } },
        scales: { y: { beginAtZero: true, title: { display: true, text: "top-1 error %" } } },
      },
    },
  };
  const charts = [
    lineChart("chart-val-top1", `Validation top-1 (%) per epoch, ${r.data}`, "val top-1 %", r, (c, k) => {
      const v = c.epochs[k].valTop1;
      return v === null ? null : 100 * v;
    }),
    lineChart("chart-train-loss", `Training loss per epoch, ${r.data}`, "train loss", r, (c, k) => c.epochs[k].trainLoss),
    bars,
  ];
  if (charts.length !== CHART_COUNT) throw new Error("CHART_COUNT is out of date");
  return charts;
}

function htmlTable(t: ReportTable): string {
  const paperCol = t.head.findIndex((h) => h.startsWith("paper"));
  const cls = (s: string, k: number) => [k === paperCol ? "paper" : "", /^-?[\d,.]+$/.test(s) ? "num" : ""].filter(Boolean).join(" ");
  const cell = (tag: string, s: string, k: number) => `<${tag}${cls(s, k) ? ` class="${cls(s, k)}"` : ""}>${esc(s)}</${tag}>`;
  const rows = t.rows.length ? t.rows : [t.head.map((_, k) => (k === 0 ? "(no rows)" : ""))];
  return `<section id="${esc(t.id)}"><h2>${esc(t.title)}</h2><p class="note">${esc(t.note)}</p>
<table><thead><tr>${t.head.map((h, k) => cell("th", h, k)).join("")}</tr></thead>
<tbody>${rows.map((row) => `<tr>${row.map((s, k) => cell("td", s, k)).join("")}</tr>`).join("\n")}</tbody></table></section>`;
}

/** Rows are true classes; shade is the row's share, with errors scaled up so a 2% confusion is still visible. */
function confusionTable(r: ReproduceResults, c: ConfigResult): string {
  const head = `<tr><th>true \\ predicted</th>${r.classes.map((n) => `<th>${esc(n)}</th>`).join("")}<th>recall %</th></tr>`;
  const rows = c.confusion.map((row, t) => {
    const total = row.reduce((a, b) => a + b, 0) || 1;
    const cells = row.map((n, p) => {
      const share = n / total;
      const alpha = t === p ? share : Math.min(1, 4 * share);
      const rgb = t === p ? "37,99,235" : "220,38,38";
      const ink = alpha > 0.55 ? "#fff" : "#111";
      return `<td style="background:rgba(${rgb},${alpha.toFixed(3)});color:${ink}" title="${esc(`${className(r, t)} as ${className(r, p)}`)}">${n}</td>`;
    });
    return `<tr><th>${esc(className(r, t))}</th>${cells.join("")}<td>${pct(row[t] / total)}</td></tr>`;
  });
  return `<table class="confusion"><thead>${head}</thead><tbody>${rows.join("\n")}</tbody></table>`;
}

function worstFigures(r: ReproduceResults, c: ConfigResult): string {
  const shown = c.worst.filter((w) => isPngDataUrl(w.png));
  if (!shown.length) return `<p class="note">No misclassified test images recorded.</p>`;
  return `<div class="worst">${shown
    .map(
      (w) => `<figure><img src="${esc(w.png)}" alt="${esc(`test image ${w.index}`)}">
<figcaption>#${w.index}<br>true: ${esc(className(r, w.label))}<br>predicted: ${esc(className(r, w.predicted))}<br>${pct(w.confidence)}%</figcaption></figure>`,
    )
    .join("\n")}</div>`;
}

function perConfig(r: ReproduceResults): string {
  return r.configs
    .map((c, i) => {
      const single = c.evals.find((e) => e.protocol === "single" && e.scales.length === 1) ?? c.evals[0];
      const summary = `${c.name} (${c.arch}, ${c.depth} layers, S ${c.trainScale})${single ? `: top-1 error ${pct(single.top1Error)}% (${single.protocol}, Q ${single.scales.join(", ")})` : ""}`;
      return `<details${i === 0 ? " open" : ""}><summary>${esc(summary)}</summary>
<h3>Confusion matrix (single-scale test)</h3>${confusionTable(r, c)}
<h3>Most confidently wrong</h3>${worstFigures(r, c)}</details>`;
    })
    .join("\n");
}

function findings(r: ReproduceResults): string {
  if (!r.findings.length) return `<p class="note">No findings.</p>`;
  const rows = r.findings.map(
    (f) =>
      `<tr><td>${esc(f.question)}</td><td>${esc(f.paper)}</td><td>${esc(f.ours)}</td><td class="agree-${f.agrees === null ? "undecided" : f.agrees ? "yes" : "no"}">${esc(verdictText(f))}</td></tr>`,
  );
  return `<table class="findings"><thead><tr><th>question</th><th>paper</th><th>ours</th><th>agrees</th></tr></thead><tbody>${rows.join("\n")}</tbody></table>`;
}

const CSS = `
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1180px; padding: 16px 24px; color: #111; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 28px; } h3 { font-size: 15px; }
table { border-collapse: collapse; margin: 8px 0; } th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; }
.num, .confusion td { text-align: right; } thead th { background: #f3f3f3; }
.paper { color: #555; background: #fafaf0; } .note { color: #555; margin: 4px 0; }
.findings td { text-align: left; vertical-align: top; } .agree-yes { color: #166534; } .agree-no { color: #b91c1c; }
.agree-undecided { color: #555; }
.warning { background: #fef3c7; border: 1px solid #d97706; padding: 8px 12px; }
.confusion td, .confusion th { font-size: 12px; padding: 2px 5px; }
.charts { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; } .chart { position: relative; height: 320px; }
.chart.wide { grid-column: 1 / -1; }
.worst { display: flex; flex-wrap: wrap; gap: 10px; } figure { margin: 0; text-align: center; font-size: 12px; }
figure img { width: 84px; height: 84px; image-rendering: pixelated; border: 1px solid #ccc; }
details { margin: 8px 0; } summary { cursor: pointer; font-weight: 600; }
pre { background: #f6f6f6; padding: 8px; overflow-x: auto; white-space: pre-wrap; } dt { font-weight: 600; float: left; width: 90px; }
`;

/** Runs in the page: draws every chart from the JSON, then tells a waiting test how many it drew. */
const DRAW = `(() => {
  const specs = JSON.parse(document.getElementById("chart-data").textContent);
  let drawn = 0;
  for (const s of specs) {
    try {
      new Chart(document.getElementById(s.id), s.config);
      drawn++;
    } catch (err) {
      console.error("chart " + s.id + ": " + err);
    }
  }
  window.__chartsRendered = drawn;
})();`;

export function renderHtml(r: ReproduceResults): string {
  const specs = chartSpecs(r);
  const warning = chanceWarning(r);
  // First thing under the title, so that nobody reads the tables as results when the nets have not learned.
  const banner = warning ? `<p class="warning" id="chance-warning"><strong>Warning:</strong> ${esc(warning)}</p>\n` : "";
  const canvas = (id: string, wide = false) => `<div class="chart${wide ? " wide" : ""}"><canvas id="${id}"></canvas></div>`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(`VGG reproduction: ${r.data}`)}</title><style>${CSS}</style></head>
<body>
<h1>${esc(`VGG configs A-E on ${r.data}: the paper's experiments, reproduced`)}</h1>
${banner}<dl>${settingsList(r)
    .map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`)
    .join("")}</dl>
<pre><code>${esc(r.command)}</code></pre>
<p class="note">Errors are ours on the test split, in %; the paper's (shaded column) are ILSVRC-2012 validation errors at
ImageNet scales, from the row of the same kind. Compare directions, not magnitudes.</p>
${resultTables(r).map(htmlTable).join("\n")}
<section id="findings"><h2>Findings</h2>${findings(r)}</section>
<section id="curves"><h2>Training and test charts</h2><div class="charts">
${specs.map((s) => canvas(s.id, "wide" in s)).join("\n")}</div></section>
${htmlTable(trainingTable(r))}
<section id="per-config"><h2>Per config: confusion and worst mistakes</h2>${perConfig(r)}</section>
<p class="note">Wall time ${esc(fmtDuration(r.wallSeconds))}. Charts by Chart.js (MIT), inlined.</p>
<script type="application/json" id="chart-data">${scriptJson(specs)}</script>
<script>${chartJsSource()}</script>
<script>${DRAW}</script>
</body></html>
`;
}
