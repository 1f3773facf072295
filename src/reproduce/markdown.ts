/**
 * `vgg reproduce`'s report.md, and the result tables it shares with the HTML report (built once here, so both show
 * the same rows). Our rates are fractions (as src/eval/metrics.ts gives them); the paper's are ImageNet percents.
 */
import { chanceWarning, verdictText } from "./findings.js";
import type { ConfigResult, PaperRow, ProtocolName, ProtocolResult, ReproduceResults } from "./results.js";

export interface ReportTable {
  id: string;
  title: string;
  note: string;
  head: string[];
  /** Plain text cells; each renderer escapes them for its format. */
  rows: string[][];
}

export const pct = (x: number | null | undefined): string =>
  x === null || x === undefined || !Number.isFinite(x) ? "-" : (100 * x).toFixed(2);

export function fmtDuration(seconds: number): string {
  if (seconds < 90) return `${seconds.toFixed(0)} s`;
  const min = seconds / 60;
  if (min < 90) return `${min.toFixed(1)} min`;
  return `${Math.floor(min / 60)} h ${String(Math.round(min % 60)).padStart(2, "0")} min`;
}

export const fmtScales = (scales: number[]): string => (scales.length === 1 ? String(scales[0]) : `{${scales.join(", ")}}`);

/**
 * The paper's row for one of ours. Its scales are ImageNet pixels and ours Fashion-MNIST pixels, so rows match by kind:
 * same config and protocol, single vs multiple test scales, fixed vs jittered training scale. `tables` is the order of
 * preference; within a table the first row wins (S = 256 over S = 384 for a fixed scale).
 */
export function paperRowFor(paper: PaperRow[], c: ConfigResult, e: ProtocolResult, tables: number[]): PaperRow | undefined {
  const jittered = c.trainScale.includes(":");
  const multi = e.scales.length > 1;
  for (const t of tables) {
    const hit = paper.find(
      (p) =>
        p.table === t &&
        p.config === c.name &&
        p.protocol === e.protocol &&
        p.testScales.length > 1 === multi &&
        p.trainScale.includes(":") === jittered,
    );
    if (hit) return hit;
  }
  return undefined;
}

const paperCell = (p: PaperRow | undefined): string =>
  p ? `${p.top1Error.toFixed(1)} / ${p.top5Error.toFixed(1)} (T${p.table}: S ${p.trainScale}, Q ${fmtScales(p.testScales)})` : "-";

const PAPER_HEAD = "paper top-1 / top-5 err % (ImageNet)";

function rowsOf(
  r: ReproduceResults,
  keep: (e: ProtocolResult) => boolean,
  tables: number[],
  cells: (c: ConfigResult, e: ProtocolResult) => string[],
): string[][] {
  return r.configs.flatMap((c) =>
    c.evals.filter(keep).map((e) => [...cells(c, e), pct(e.top1Error), pct(e.top5Error), paperCell(paperRowFor(r.paper, c, e, tables))]),
  );
}

export function resultTables(r: ReproduceResults): ReportTable[] {
  const base = (c: ConfigResult, e: ProtocolResult) => [c.name, String(c.depth), c.trainScale, fmtScales(e.scales)];
  const errHead = ["top-1 err %", "top-5 err %", PAPER_HEAD];
  const COMPARED: ProtocolName[] = ["dense", "multicrop", "dense+multicrop"];
  return [
    {
      id: "single-scale",
      title: "Single test scale (cf. Table 3)",
      note: "One test scale Q per net. The paper's column is its ImageNet row of the same kind (fixed or jittered S).",
      head: ["config", "depth", "train S", "test Q", ...errHead],
      rows: rowsOf(r, (e) => e.protocol === "single" && e.scales.length === 1, [3], base),
    },
    {
      id: "multi-scale",
      title: "Multiple test scales (cf. Table 4)",
      note: "Posteriors averaged over the test scales Q. The paper's Table 4 is dense evaluation only.",
      head: ["config", "depth", "train S", "test Q", "protocol", ...errHead],
      rows: rowsOf(
        r,
        (e) => e.scales.length > 1 && (e.protocol === "dense" || e.protocol === "single"),
        [4],
        (c, e) => [...base(c, e), e.protocol],
      ),
    },
    {
      id: "protocols",
      title: "Dense vs multi-crop evaluation (cf. Table 5)",
      note: "Same nets, different test protocols; dense+multicrop averages the two's posteriors.",
      head: ["config", "depth", "train S", "test Q", "protocol", ...errHead],
      rows: rowsOf(
        r,
        (e) => COMPARED.includes(e.protocol),
        [5, 4, 3],
        (c, e) => [...base(c, e), e.protocol],
      ),
    },
  ];
}

/** What each net is and how its training went (the row counterpart of the HTML page's curves). */
export function trainingTable(r: ReproduceResults): ReportTable {
  return {
    id: "training",
    title: "Training",
    note: "Best validation top-1 over the epochs; init is what the net copied from net A (the paper's rule).",
    head: ["config", "arch", "params", "train S", "init", "epochs", "final train loss", "best val top-1 %", "train time"],
    rows: r.configs.map((c) => {
      const last = c.epochs.at(-1);
      const vals = c.epochs.map((p) => p.valTop1).filter((v): v is number => v !== null);
      return [
        c.name,
        c.arch,
        c.params.toLocaleString("en-US"),
        c.trainScale,
        c.initFrom ?? "scratch",
        String(c.epochs.length),
        last ? last.trainLoss.toFixed(4) : "-",
        vals.length ? pct(Math.max(...vals)) : "-",
        fmtDuration(c.trainSeconds),
      ];
    }),
  };
}

export function settingsList(r: ReproduceResults): [string, string][] {
  const s = r.settings;
  return [
    ["data", `${r.data} (${r.classes.length} classes, ${s.testImages} test images per protocol)`],
    ["started", r.created],
    ["wall time", fmtDuration(r.wallSeconds)],
    ["model", `${s.batchNorm ? "with" : "without"} BatchNorm, ${s.head} head, widths / ${s.widthDivisor}, input ${s.inputSize} px`],
    ["training", `${s.epochs} epochs, batch ${s.batchSize}, lr ${s.lr}, seed ${s.seed}, budget ${s.budgetMinutes} min`],
  ];
}

/** Markdown tables cannot hold a `|` or a line break in a cell. */
const mdCell = (s: string) => s.replace(/\\/g, "\\\\").replace(/\|/g, "\\|").replace(/\r?\n/g, " ");

/** A code fence longer than any run of backticks inside the text. */
const fence = (text: string) => "`".repeat(Math.max(3, ...(text.match(/`+/g) ?? []).map((m) => m.length + 1)));

function mdTable(t: ReportTable): string[] {
  const line = (cells: string[]) => `| ${cells.map(mdCell).join(" | ")} |`;
  const body = t.rows.length ? t.rows.map(line) : [line(t.head.map((_, k) => (k === 0 ? "(no rows)" : "")))];
  return [`## ${t.title}`, "", t.note, "", line(t.head), `|${t.head.map(() => "---").join("|")}|`, ...body, ""];
}

/** The findings as report.md lists them (README's sample is this block, verbatim). */
export function findingsMarkdown(r: ReproduceResults): string[] {
  return r.findings.flatMap((f) => [`- **${f.question}** Agrees: ${verdictText(f)}.`, `  - paper: ${f.paper}`, `  - ours: ${f.ours}`]);
}

export function renderMarkdown(r: ReproduceResults): string {
  const findings = findingsMarkdown(r);
  const warning = chanceWarning(r);
  return [
    `# VGG configs A-E on ${r.data}: the paper's experiments, reproduced`,
    "",
    // First, so that nobody reads the tables below as results when the nets have not learned.
    ...(warning ? [`> **Warning:** ${warning}`, ""] : []),
    "Errors are ours on the test split, in %; the paper's are ILSVRC-2012 validation errors at ImageNet scales, shown",
    "beside the row of the same kind. Compare directions (deeper better? jitter helps?), not magnitudes.",
    "",
    ...resultTables(r).flatMap(mdTable),
    "## Findings",
    "",
    ...(findings.length ? findings : ["(none)"]),
    "",
    ...mdTable(trainingTable(r)),
    "## Settings",
    "",
    ...settingsList(r).map(([k, v]) => `- ${k}: ${v}`),
    "",
    fence(r.command),
    r.command,
    fence(r.command),
    "",
  ].join("\n");
}
