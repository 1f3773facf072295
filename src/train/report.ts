/** RUN_DIR/report.md: what was trained, the curve, and the test result, for a person to read. */
import { join } from "node:path";
import type { Scores } from "../eval/metrics.js";
import { writeFileAtomic } from "../io/atomic.js";
import type { EpochMetrics } from "./trainer.js";

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
): string {
  const rows = history.map(
    (m) =>
      `| ${m.epoch} | ${m.lr.toPrecision(3)} | ${m.trainLoss.toFixed(4)} | ${pct(m.trainTop1)} | ${m.val ? m.val.loss.toFixed(4) : "-"} | ${pct(m.val?.top1)} | ${pct(m.val?.top5)} | ${m.imagesPerSecond.toFixed(0)} |`,
  );
  const md = [
    `# ${title}`,
    "",
    "```",
    setup,
    "```",
    "",
    test
      ? `**Test (${test.n} images, best epoch ${bestEpoch} by validation accuracy): top-1 ${pct(test.top1)}%, top-5 ${pct(test.top5)}%** (top-1 error ${pct(test.top1Error)}%, top-5 error ${pct(test.top5Error)}%), loss ${test.loss.toFixed(4)}.`
      : "No test split was evaluated.",
    ...(testProtocol
      ? [
          "",
          `The same weights under the ${testProtocol.protocol} protocol (test scale ${testProtocol.scales.join(", ")}): top-1 ${pct(testProtocol.top1)}%, top-5 ${pct(testProtocol.top5)}%, loss ${testProtocol.loss.toFixed(4)}.${testProtocol.note ? ` Note: ${testProtocol.note}.` : ""}`,
        ]
      : []),
    "",
    `Wall time: ${(seconds / 60).toFixed(1)} min.`,
    "",
    "| epoch | lr | train loss | train top-1 % | val loss | val top-1 % | val top-5 % | img/s |",
    "|---|---|---|---|---|---|---|---|",
    ...rows,
    "",
  ].join("\n");
  const path = join(dir, "report.md");
  writeFileAtomic(path, [new TextEncoder().encode(md)]);
  return path;
}
