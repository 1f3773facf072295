/**
 * A run's record for people and tools: report.md (what was trained, the curve, the test result), metrics.jsonl (one
 * line per completed epoch) and the run's description that both the log and the report begin with.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { type Dataset, describeSplits } from "../data/dataset.js";
import type { TransformConfig } from "../data/transforms.js";
import type { Scores } from "../eval/metrics.js";
import { freezeSummary, resolveFreeze } from "../graph/train-step.js";
import { writeFileAtomic } from "../io/atomic.js";
import type { VggModel } from "../zoo/model.js";
import { dropsLastBatch } from "./config.js";
import type { EpochMetrics, RunConfig } from "./types.js";

const pct = (x: number | undefined) => (x === undefined ? "-" : (100 * x).toFixed(2));

export function writeReport(
  dir: string,
  title: string,
  setup: string,
  history: EpochMetrics[],
  test: Scores | null,
  bestEpoch: number,
  seconds: number,
  testProtocol?: Scores & { protocol: string; scales: number[]; note?: string },
  /** The averaged models' test lines (--ema, --swa-start). */
  averaged: string[] = [],
): string {
  // --ema adds the EMA's validation accuracy beside the raw weights'; --test-every-epoch the test curve.
  const ema = history.some((m) => m.emaVal);
  const tested = history.some((m) => m.test !== undefined);
  const emaTested = history.some((m) => m.emaTest !== undefined);
  const rows = history.map(
    (m) =>
      `| ${m.epoch} | ${m.lr.toPrecision(3)} | ${m.trainLoss.toFixed(4)} | ${pct(m.trainTop1)} | ${m.val ? m.val.loss.toFixed(4) : "-"} | ${pct(m.val?.top1)} | ${pct(m.val?.top5)} |${ema ? ` ${pct(m.emaVal?.top1)} |` : ""}${tested ? ` ${pct(m.test?.top1)} |` : ""}${emaTested ? ` ${pct(m.emaTest?.top1)} |` : ""} ${m.imagesPerSecond.toFixed(0)} |`,
  );
  const md = [
    `# ${title}`,
    "",
    "```",
    setup,
    "```",
    "",
    test
      ? `**Test (${test.n} images, best epoch ${bestEpoch} by ${history.some((m) => m.val) ? "validation" : "training"} accuracy): top-1 ${pct(test.top1)}%, top-5 ${pct(test.top5)}%** (top-1 error ${pct(test.top1Error)}%, top-5 error ${pct(test.top5Error)}%), loss ${test.loss.toFixed(4)}.`
      : "No test split was evaluated.",
    ...(testProtocol
      ? [
          "",
          `The same weights under the ${testProtocol.protocol} protocol (test scale ${testProtocol.scales.join(", ")}): top-1 ${pct(testProtocol.top1)}%, top-5 ${pct(testProtocol.top5)}%, loss ${testProtocol.loss.toFixed(4)}.${testProtocol.note ? ` Note: ${testProtocol.note}.` : ""}`,
        ]
      : []),
    ...averaged.flatMap((l) => ["", l]),
    "",
    `Wall time: ${(seconds / 60).toFixed(1)} min.`,
    "",
    ...timeToAccuracy(history),
    `| epoch | lr | train loss | train top-1 % | val loss | val top-1 % | val top-5 % |${ema ? " EMA val top-1 % |" : ""}${tested ? " test top-1 % |" : ""}${emaTested ? " EMA test top-1 % |" : ""} img/s |`,
    `|---|---|---|---|---|---|---|${ema ? "---|" : ""}${tested ? "---|" : ""}${emaTested ? "---|" : ""}---|`,
    ...rows,
    "",
  ].join("\n");
  const path = join(dir, "report.md");
  writeFileAtomic(path, [new TextEncoder().encode(md)]);
  return path;
}

/** The first epoch whose `score` reaches `top1`, and the run's time to the end of it (the epochs' own seconds). */
export function timeTo(
  history: EpochMetrics[],
  top1: number,
  score: (m: EpochMetrics) => number | undefined,
): { epoch: number; seconds: number } | null {
  let seconds = 0;
  for (const m of history) {
    seconds += m.seconds;
    const s = score(m);
    if (s !== undefined && s >= top1) return { epoch: m.epoch, seconds };
  }
  return null;
}

/**
 * With --test-every-epoch, the time to each whole percent of test top-1 from 90% up to the best reached, as DAWNBench
 * reports it: the training epochs' wall time (validation and checkpoints included, the per-epoch test and the setup
 * not) to the end of the first epoch at that accuracy, for the weights and for the EMA.
 */
function timeToAccuracy(history: EpochMetrics[]): string[] {
  const curves: [string, (m: EpochMetrics) => number | undefined][] = [
    ["weights", (m) => m.test?.top1],
    ["EMA", (m) => m.emaTest?.top1],
  ];
  const used = curves.filter(([, f]) => history.some((m) => f(m) !== undefined));
  const best = Math.max(...history.flatMap((m) => used.map(([, f]) => f(m) ?? 0)));
  if (!used.length || best < 0.9) return [];
  const cell = (t: number, f: (m: EpochMetrics) => number | undefined) => {
    const r = timeTo(history, t, f);
    return r ? `${fmtMinutes(r.seconds)} (epoch ${r.epoch})` : "-";
  };
  const rows: string[] = [];
  for (let p = 90; p <= Math.floor(100 * best + 1e-9); p++) rows.push(`| ${p}% | ${used.map(([, f]) => cell(p / 100, f)).join(" | ")} |`);
  return [
    "Time to test top-1 (the epochs' wall time, the per-epoch test not counted):",
    "",
    `| test top-1 | ${used.map(([n]) => n).join(" | ")} |`,
    `|---|${used.map(() => "---|").join("")}`,
    ...rows,
    "",
  ];
}

const fmtMinutes = (s: number) => {
  const r = Math.round(s);
  return `${Math.floor(r / 60)}:${String(r % 60).padStart(2, "0")}`;
};

export function jsonl(history: EpochMetrics[]): string {
  return history.map((e) => `${JSON.stringify(e)}\n`).join("");
}

/** metrics.jsonl's epochs (for checkpoints from before the history was kept in them); unreadable lines are skipped. */
export function readHistory(path: string): EpochMetrics[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, "utf8")
    .split("\n")
    .filter((l) => l.trim())
    .flatMap((l) => {
      try {
        return [JSON.parse(l) as EpochMetrics];
      } catch {
        return [];
      }
    });
}

const fmtList = (v: number[]) => v.map((x) => x.toFixed(3)).join("/");

export function describeRun(cfg: RunConfig, ds: Dataset, model: VggModel, tf: TransformConfig): string {
  const s = ds.splits;
  const n = (x: { indices: Int32Array } | null) => (x ? x.indices.length : 0);
  const rest = n(s.train) % cfg.batchSize;
  const dropped =
    rest === 0 || !dropsLastBatch(cfg, model, n(s.train))
      ? ""
      : ` (last batch of ${rest} dropped${cfg.dropLast === false ? ": batch norm needs 2 or more images" : ""})`;
  return [
    `${cfg.arch}: ${model.options.head} head, width /${model.options.widthDivisor}, input ${model.inputShape.join("x")}, ${model.options.numClasses} classes`,
    `data ${cfg.data}: ${describeSplits(ds)}`,
    `SGD lr ${cfg.lr} momentum ${cfg.momentum} weight decay ${cfg.weightDecay}${cfg.nesterov ? " nesterov" : ""}, batch ${cfg.batchSize}${dropped}, ${cfg.epochs} epochs, schedule ${cfg.schedule}, init ${cfg.init}, seed ${cfg.seed}`,
    `augmentation ${JSON.stringify({ ...tf, mean: undefined, std: undefined })}`,
    `normalisation ${cfg.normalizeTo ? `${cfg.normalizeTo.from} mean/std` : (cfg.normalize ?? "meanstd")}${tf.mean ? ` (mean ${fmtList(tf.mean)}, std ${fmtList(tf.std ?? [])})` : ""}`,
    ...(cfg.freeze ? [freezeSummary(model, cfg.freeze, resolveFreeze(model, cfg.freeze))] : []),
    ...averagingSummary(cfg),
  ].join("\n");
}

/** The run description's line for --ema and --swa-start (none without them). */
function averagingSummary(cfg: RunConfig): string[] {
  const parts = [
    cfg.ema !== undefined ? `EMA decay ${cfg.ema} after every step` : "",
    cfg.swaStart !== undefined ? `SWA of epochs ${cfg.swaStart}-${cfg.epochs}, BN statistics recomputed at the end` : "",
  ].filter(Boolean);
  return parts.length ? [`weight averaging: ${parts.join("; ")}`] : [];
}
