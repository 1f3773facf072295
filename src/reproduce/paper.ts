/** The paper's ILSVRC-2012 validation errors (%, Tables 3-5), for the report to show beside ours. */
import type { PaperRow } from "./results.js";

const T = (
  table: 3 | 4 | 5,
  config: PaperRow["config"],
  trainScale: string,
  testScales: number[],
  protocol: PaperRow["protocol"],
  top1Error: number,
  top5Error: number,
): PaperRow => ({ table, config, trainScale, testScales, protocol, top1Error, top5Error });

export const PAPER_ROWS: PaperRow[] = [
  // Table 3: single test scale (Q = S, or Q = (Smin + Smax) / 2 when jittered).
  T(3, "A", "256", [256], "single", 29.6, 10.4),
  T(3, "A-LRN", "256", [256], "single", 29.7, 10.5),
  T(3, "B", "256", [256], "single", 28.7, 9.9),
  T(3, "C", "256", [256], "single", 28.1, 9.4),
  T(3, "C", "384", [384], "single", 28.1, 9.3),
  T(3, "C", "256:512", [384], "single", 27.3, 8.8),
  T(3, "D", "256", [256], "single", 27.0, 8.8),
  T(3, "D", "384", [384], "single", 26.8, 8.7),
  T(3, "D", "256:512", [384], "single", 25.6, 8.1),
  T(3, "E", "256", [256], "single", 27.3, 9.0),
  T(3, "E", "384", [384], "single", 26.9, 8.7),
  T(3, "E", "256:512", [384], "single", 25.5, 8.0),
  // Table 4: multi-scale dense evaluation.
  T(4, "B", "256", [224, 256, 288], "dense", 28.2, 9.6),
  T(4, "C", "256", [224, 256, 288], "dense", 27.7, 9.2),
  T(4, "C", "384", [352, 384, 416], "dense", 27.8, 9.2),
  T(4, "C", "256:512", [256, 384, 512], "dense", 26.3, 8.2),
  T(4, "D", "256", [224, 256, 288], "dense", 26.6, 8.6),
  T(4, "D", "384", [352, 384, 416], "dense", 26.5, 8.6),
  T(4, "D", "256:512", [256, 384, 512], "dense", 24.8, 7.5),
  T(4, "E", "256", [224, 256, 288], "dense", 26.9, 8.7),
  T(4, "E", "384", [352, 384, 416], "dense", 26.7, 8.6),
  T(4, "E", "256:512", [256, 384, 512], "dense", 24.8, 7.5),
  // Table 5: dense vs multi-crop vs both (train S in [256, 512], test Q in {256, 384, 512}).
  T(5, "D", "256:512", [256, 384, 512], "dense", 24.8, 7.5),
  T(5, "D", "256:512", [256, 384, 512], "multicrop", 24.6, 7.5),
  T(5, "D", "256:512", [256, 384, 512], "dense+multicrop", 24.4, 7.2),
  T(5, "E", "256:512", [256, 384, 512], "dense", 24.8, 7.5),
  T(5, "E", "256:512", [256, 384, 512], "multicrop", 24.6, 7.4),
  T(5, "E", "256:512", [256, 384, 512], "dense+multicrop", 24.4, 7.1),
];
