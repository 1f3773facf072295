/**
 * The shape of `vgg reproduce`'s results.json: everything the HTML and Markdown reports are drawn from, so a report
 * can be re-rendered from the JSON alone.
 */

/** The paper's configs this report trains (Table 1 columns). */
export type ConfigName = "A" | "A-LRN" | "B" | "C" | "D" | "E";

export type ProtocolName = "single" | "dense" | "multicrop" | "dense+multicrop";

export interface EpochPoint {
  epoch: number;
  lr: number;
  trainLoss: number;
  trainTop1: number;
  /** Held-out validation split (null when there is none). */
  valLoss: number | null;
  valTop1: number | null;
  seconds: number;
}

export interface ProtocolResult {
  protocol: ProtocolName;
  /** Test scales Q (shorter image side, pixels of the dataset's images). */
  scales: number[];
  n: number;
  top1: number;
  top5: number;
  top1Error: number;
  top5Error: number;
  loss: number;
  seconds: number;
}

export interface WrongExample {
  /** Index in the test split. */
  index: number;
  label: number;
  predicted: number;
  /** Posterior of the predicted class. */
  confidence: number;
  /** The test image as a PNG data URL (data:image/png;base64,...). */
  png: string;
}

export interface ConfigResult {
  name: ConfigName;
  /** Zoo arch, e.g. "vgg11_lrn". */
  arch: string;
  /** Weight layers (11, 11, 13, 16, 16, 19). */
  depth: number;
  params: number;
  /** Training scale: S ("32") or jittered "Smin:Smax" ("32:48"). */
  trainScale: string;
  /** What was copied from net A (the paper's init rule), or null when trained from scratch. */
  initFrom: string | null;
  trainSeconds: number;
  epochs: EpochPoint[];
  /** Results per protocol; scales differ per row (single-scale rows and multi-scale rows). */
  evals: ProtocolResult[];
  /** confusion[true][predicted], from the single-scale protocol over the evaluated test images. */
  confusion: number[][];
  /** The test images it gets wrong most confidently (at most 8), most confident first. */
  worst: WrongExample[];
}

export interface PaperRow {
  config: ConfigName;
  /** Training scale as the paper writes it: "256", "384", "256:512". */
  trainScale: string;
  /** Test scales, e.g. [256] or [224, 256, 288]. */
  testScales: number[];
  protocol: ProtocolName;
  top1Error: number;
  top5Error: number;
  table: 3 | 4 | 5;
}

export interface Finding {
  /** Short id: depth, lrn, conv1x1, jitter, dense-multicrop. */
  id: string;
  question: string;
  /** What the paper found. */
  paper: string;
  /** What our numbers say, with the numbers. */
  ours: string;
  /** Whether our numbers agree with the paper's answer; null when not decided. */
  agrees: boolean | null;
  /** Why it is not decided: "within noise", or the nets at chance (absent in results written before it existed). */
  undecided?: string;
}

export interface ReproduceResults {
  version: 1;
  /** ISO time the run started. */
  created: string;
  /** The command line that produced it. */
  command: string;
  data: string;
  classes: string[];
  settings: {
    widthDivisor: number;
    head: "paper" | "compact";
    batchNorm: boolean;
    inputSize: number;
    epochs: number;
    batchSize: number;
    lr: number;
    seed: number;
    budgetMinutes: number;
    /** Test images every protocol was evaluated on. */
    testImages: number;
  };
  wallSeconds: number;
  configs: ConfigResult[];
  findings: Finding[];
  /** The paper's ImageNet numbers (Tables 3-5) for comparison. */
  paper: PaperRow[];
}
