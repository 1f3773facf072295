/**
 * A VGG as a list of layers with torchvision's module names (`features.N`, `avgpool`, `classifier.N`), so a
 * torchvision state_dict maps one to one, and the paper's tap names (relu3_2, pool4, fc6) on the outputs.
 */
import { VggError } from "../errors.js";
import { type AttrsOf, type OpName, opOf, type ParamSpec, type Shape } from "../ops/index.js";
import { numel } from "../tensor.js";
import { ARCHS, archSpec, CONFIGS, type ConfigItem, parseItem } from "./configs.js";

export type Head = "paper" | "compact";

export interface ModelOptions {
  numClasses?: number;
  inChannels?: number;
  /** Dropout rate of fc6 and fc7 (paper: 0.5). */
  dropout?: number;
  /** "paper": adaptive 7x7 average pool, FC-4096, FC-4096, FC-N. "compact": global average pool, one FC. */
  head?: Head;
  /** Divide every width (convs and the FC-4096s) by this, for small experiments and tests. */
  widthDivisor?: number;
  /** Square input size the shapes are planned for (the graph's batch stays free). */
  inputSize?: number;
  /** A custom feature config instead of the arch's (numbers, "conv1-N", "conv3-N", "M"). */
  config?: (ConfigItem | string)[];
  batchNorm?: boolean;
  lrn?: boolean;
}

/** The options a user sets by flag (the CLI's model flags, `train({...})`), beside the arch and a config. */
export type ModelFlagOptions = Pick<ModelOptions, "numClasses" | "inChannels" | "dropout" | "head" | "widthDivisor" | "inputSize">;

export type ResolvedOptions = Required<Omit<ModelOptions, "config">> & { config: (ConfigItem | string)[] };

interface LayerBase {
  name: string;
  inShape: Shape;
  outShape: Shape;
  params: ParamSpec[];
  macs: number;
  /** The paper-style name of this layer's output, if it is a tap. */
  tap?: string;
}

/** A layer of kind K, with that kind's attributes. */
export type LayerOf<K extends OpName> = LayerBase & { kind: K; attrs: AttrsOf<K> };

/** Any layer: testing `kind` narrows `attrs` (layer.kind === "conv" gives ConvAttrs). */
export type Layer = { [K in OpName]: LayerOf<K> }[OpName];

export interface VggModel {
  arch: string;
  options: ResolvedOptions;
  layers: Layer[];
  inputShape: Shape;
  /** Smallest square input that leaves a 1x1 map after the last pool. */
  minInputSize: number;
}

export const LRN_PAPER = { size: 5, alpha: 1e-4, beta: 0.75, k: 2 };

export function resolveOptions(arch: string, o: ModelOptions = {}): ResolvedOptions {
  const spec = archSpec(arch);
  if (!spec && !o.config) {
    throw new VggError(`unknown arch '${arch}' (known: ${ARCHS.map((a) => a.name).join(", ")})`);
  }
  const r: ResolvedOptions = {
    numClasses: o.numClasses ?? 1000,
    inChannels: o.inChannels ?? 3,
    dropout: o.dropout ?? 0.5,
    head: o.head ?? "paper",
    widthDivisor: o.widthDivisor ?? 1,
    inputSize: o.inputSize ?? 224,
    config: o.config ?? (spec ? CONFIGS[spec.config] : []),
    batchNorm: o.batchNorm ?? spec?.batchNorm ?? false,
    lrn: o.lrn ?? spec?.lrn ?? false,
  };
  const posInt = (k: keyof ResolvedOptions) => {
    const v = r[k] as number;
    if (!Number.isInteger(v) || v < 1) throw new VggError(`--${kebab(k)} must be a positive integer, got ${v}`);
  };
  posInt("numClasses");
  posInt("inChannels");
  posInt("widthDivisor");
  posInt("inputSize");
  if (!(r.dropout >= 0 && r.dropout < 1)) throw new VggError(`--dropout must be in [0, 1), got ${r.dropout}`);
  if (r.head !== "paper" && r.head !== "compact") throw new VggError(`--head must be paper or compact, got '${r.head}'`);
  return r;
}

function kebab(s: string): string {
  return s.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** Build the layer list of `arch` (or a custom config) for the given options. */
export function buildModel(arch: string, opts: ModelOptions = {}): VggModel {
  const o = resolveOptions(arch, opts);
  const layers: Layer[] = [];
  let shape: Shape = [o.inChannels, o.inputSize, o.inputSize];
  const pools = o.config.filter((c) => c === "M").length;
  const minInputSize = 2 ** pools;
  if (o.inputSize < minInputSize) {
    throw new VggError(`input size ${o.inputSize} is under the minimum ${minInputSize} for ${arch} (${pools} max-pools)`);
  }
  const push = <K extends OpName>(name: string, kind: K, attrs: AttrsOf<K>, tap?: string) => {
    const op = opOf(kind);
    let outShape: Shape;
    try {
      outShape = op.outShape(attrs, shape);
    } catch (err) {
      throw new VggError(`${name}: ${(err as Error).message}`);
    }
    // The one place a kind and its attrs are paired: K is generic here, so the union cannot see they match.
    const layer = { name, kind, attrs, inShape: shape, outShape, params: op.params(attrs, shape), macs: op.macs(attrs, shape), tap };
    layers.push(layer as LayerOf<K> as Layer);
    shape = outShape;
  };

  let idx = 0;
  let block = 1;
  let convInBlock = 0;
  let lrnDone = !o.lrn;
  for (const item of o.config) {
    const p = parseItem(item);
    if (p === "M") {
      push(`features.${idx++}`, "maxpool", { kernel: 2, stride: 2 }, `pool${block}`);
      block++;
      convInBlock = 0;
      continue;
    }
    const width = Math.max(1, Math.floor(p.width / o.widthDivisor));
    convInBlock++;
    push(`features.${idx++}`, "conv", { inC: shape[0], outC: width, kernel: p.kernel });
    if (o.batchNorm) push(`features.${idx++}`, "batchnorm", { channels: width, eps: 1e-5, momentum: 0.1 });
    push(`features.${idx++}`, "relu", {}, `relu${block}_${convInBlock}`);
    if (!lrnDone) {
      push(`features.${idx++}`, "lrn", { ...LRN_PAPER });
      lrnDone = true;
    }
  }
  if (o.head === "paper") {
    const hidden = Math.max(1, Math.floor(4096 / o.widthDivisor));
    push("avgpool", "adaptive_avgpool", { out: 7 });
    push("flatten", "flatten", {});
    push("classifier.0", "linear", { inF: shape[0], outF: hidden });
    push("classifier.1", "relu", {}, "fc6");
    push("classifier.2", "dropout", { p: o.dropout });
    push("classifier.3", "linear", { inF: hidden, outF: hidden });
    push("classifier.4", "relu", {}, "fc7");
    push("classifier.5", "dropout", { p: o.dropout });
    push("classifier.6", "linear", { inF: hidden, outF: o.numClasses }, "logits");
  } else {
    push("avgpool", "adaptive_avgpool", { out: 1 });
    push("flatten", "flatten", {});
    if (o.dropout > 0) push("dropout", "dropout", { p: o.dropout });
    push("classifier", "linear", { inF: shape[0], outF: o.numClasses }, "logits");
  }
  return { arch, options: o, layers, inputShape: [o.inChannels, o.inputSize, o.inputSize], minInputSize };
}

/** Every state_dict entry of the model, in torchvision's order. */
export function stateSpec(m: VggModel): { key: string; layer: Layer; param: ParamSpec }[] {
  return m.layers.flatMap((layer) => layer.params.map((param) => ({ key: `${layer.name}.${param.suffix}`, layer, param })));
}

export function paramCount(m: VggModel): number {
  return stateSpec(m)
    .filter((e) => e.param.trainable)
    .reduce((n, e) => n + numel(e.param.shape), 0);
}

export function macCount(m: VggModel): number {
  return m.layers.reduce((n, l) => n + l.macs, 0);
}

export function tapNames(m: VggModel): string[] {
  return m.layers.flatMap((l) => (l.tap ? [l.tap] : []));
}
