/**
 * Table 1 of the paper as data. A number N is conv3-N (3x3, pad 1); "conv1-N" is the 1x1 convolution of
 * configuration C; "M" is the 2x2 max-pool, stride 2. LRN (A-LRN) is a flag on the arch, not a table entry.
 */
import { VggError } from "../errors.js";

export type ConfigItem = number | "M" | `conv${1 | 3}-${number}`;

export const CONFIGS = {
  A: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
  B: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
  C: [64, 64, "M", 128, 128, "M", 256, 256, "conv1-256", "M", 512, 512, "conv1-512", "M", 512, 512, "conv1-512", "M"],
  D: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
  E: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
} satisfies Record<string, ConfigItem[]>;

export type ConfigName = keyof typeof CONFIGS;

export interface ArchSpec {
  name: string;
  config: ConfigName;
  /** The paper's label (Table 1 column). */
  paper: string;
  batchNorm: boolean;
  lrn: boolean;
}

const BASE: [string, ConfigName, string, boolean][] = [
  ["vgg11", "A", "A", false],
  ["vgg11_lrn", "A", "A-LRN", true],
  ["vgg13", "B", "B", false],
  ["vgg16_1x1", "C", "C", false],
  ["vgg16", "D", "D", false],
  ["vgg19", "E", "E", false],
];

/** All twelve models: each paper config, and each with BatchNorm after every conv (torchvision's `_bn`). */
export const ARCHS: ArchSpec[] = BASE.flatMap(([name, config, paper, lrn]) => [
  { name, config, paper, batchNorm: false, lrn },
  { name: `${name}_bn`, config, paper: `${paper} (BN)`, batchNorm: true, lrn },
]);

export function archSpec(name: string): ArchSpec | undefined {
  return ARCHS.find((a) => a.name === name);
}

/** A conv entry's kernel size and width, or undefined for "M". */
export function parseItem(item: ConfigItem | string): { kernel: 1 | 3; width: number } | "M" {
  if (item === "M") return "M";
  const bad = () => new VggError(`bad config entry '${item}' (want N, conv3-N, conv1-N or M, with N >= 1)`);
  if (typeof item === "number") {
    if (!Number.isSafeInteger(item) || item < 1) throw bad();
    return { kernel: 3, width: item };
  }
  const m = /^conv([13])-(\d+)$/.exec(item);
  if (!m || !(Number(m[2]) > 0)) throw bad();
  return { kernel: Number(m[1]) as 1 | 3, width: Number(m[2]) };
}
