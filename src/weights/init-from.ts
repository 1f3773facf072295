/**
 * The paper's initialisation of deeper nets from a trained net A (section 3.1): "the first four convolutional
 * layers and the last three fully-connected layers with the layers of net A (the intermediate layers were
 * initialised randomly)". A's first four are conv1_1, conv2_1, conv3_1, conv3_2, and they go to the layers of the
 * same names in the deeper net (D's conv3_1 is its fifth conv), the only reading under which the shapes agree.
 * With BN, each copied conv brings its BN (affine and running statistics). The compact head has one FC layer.
 */
import { inFile, VggError } from "../errors.js";
import { type StateDict, shapeStr } from "../tensor.js";
import type { VggModel } from "../zoo/model.js";
import { resolveWeights } from "./hub.js";
import { loadStateDict } from "./index.js";
import { stripModulePrefix, zooFits } from "./match.js";

export const COPIED_CONVS = 4;

const BN_SUFFIXES = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"];

/** Each conv layer's paper name (conv3_2 for the one whose ReLU is relu3_2), its layer name, and its BN's. */
export function paperConvs(m: VggModel): { paper: string; name: string; bn: string | null }[] {
  const out: { paper: string; name: string; bn: string | null }[] = [];
  m.layers.forEach((l, k) => {
    if (l.kind !== "conv") return;
    const bn = m.layers[k + 1]?.kind === "batchnorm" ? m.layers[k + 1].name : null;
    const relu = m.layers.slice(k + 1).find((x) => x.kind === "relu");
    out.push({ paper: (relu?.tap ?? `relu?_${out.length + 1}`).replace(/^relu/, "conv"), name: l.name, bn });
  });
  return out;
}

/** The zoo arch whose state dict `sd` is, at the target's width, head, classes and channels. */
function identify(sd: StateDict, target: VggModel, file?: string): VggModel {
  const [m] = zooFits(sd, target.options);
  if (m) return m;
  const o = target.options;
  throw new VggError(
    `not a zoo VGG at ${target.arch}'s width /${o.widthDivisor}, ${o.head} head, ${o.numClasses} classes and ${o.inChannels} input channels: net A must agree in all of them`,
    file,
  );
}

export interface InitFromResult {
  weights: StateDict;
  /** Target keys copied from net A, with their source keys. */
  copied: { key: string; from: string }[];
  /** One line: what was copied. */
  summary: string;
}

/** Copies net A's first four convs (+ BN) and its FC layers into `fresh` (the target's freshly initialised weights). */
export function initFrom(target: VggModel, fresh: StateDict, netA: StateDict, file?: string): InitFromResult {
  const a = stripModulePrefix(netA);
  const weights: StateDict = new Map(fresh);
  const copied: { key: string; from: string }[] = [];
  const copy = (key: string, from: string) => {
    const s = a.get(from);
    const t = fresh.get(key);
    if (!t) throw new Error(`init-from: target has no ${key}`);
    if (!s) throw new VggError(`net A has no '${from}' to copy into '${key}'`, file);
    if (s.dtype !== t.dtype || s.shape.length !== t.shape.length || s.shape.some((d, k) => d !== t.shape[k])) {
      throw new VggError(
        `cannot copy '${from}' (${s.dtype} ${shapeStr(s.shape)}) into ${target.arch}'s '${key}' (${t.dtype} ${shapeStr(t.shape)}): the nets must agree in width, head, classes and input channels`,
        file,
      );
    }
    weights.set(key, s);
    copied.push({ key, from });
  };
  const netAModel = identify(a, target, file);
  const src = paperConvs(netAModel).slice(0, COPIED_CONVS);
  const dst = paperConvs(target);
  const names: string[] = [];
  for (const s of src) {
    // By the paper's names: A's conv3_1 (its third conv) goes to D's conv3_1 (D's fifth), where the shapes agree.
    const d = dst.find((x) => x.paper === s.paper);
    if (!d) throw new VggError(`${target.arch} has no ${s.paper} to take net A's`, file);
    if (Boolean(s.bn) !== Boolean(d.bn))
      throw new VggError(`net A ${s.bn ? "has" : "lacks"} batch norm after ${s.paper}, ${target.arch} ${d.bn ? "has" : "lacks"} it`, file);
    for (const suf of ["weight", "bias"]) copy(`${d.name}.${suf}`, `${s.name}.${suf}`);
    if (d.bn && s.bn)
      for (const suf of BN_SUFFIXES) if (fresh.has(`${d.bn}.${suf}`) && a.has(`${s.bn}.${suf}`)) copy(`${d.bn}.${suf}`, `${s.bn}.${suf}`);
    names.push(s.paper);
  }
  const fc = [...fresh.keys()].filter((k) => k.startsWith("classifier"));
  for (const k of fc) copy(k, k);
  const fcLayers = new Set(fc.map((k) => k.replace(/\.(weight|bias)$/, ""))).size;
  const summary = `copied from net A (${netAModel.arch}): ${names.join(", ")}${src[0].bn ? " with their BN" : ""} and ${fcLayers} FC layer${fcLayers === 1 ? "" : "s"} (${copied.length} tensors); the other ${dst.length - names.length} conv layers freshly initialised`;
  return { weights, copied, summary };
}

/** Net A from a file, an entry name (vgg11.IMAGENET1K_V1) or a URL. */
export async function initFromFile(target: VggModel, fresh: StateDict, spec: string): Promise<InitFromResult> {
  const path = await resolveWeights(spec);
  let sd: StateDict;
  try {
    sd = await loadStateDict(path);
  } catch (err) {
    throw inFile(path, err);
  }
  return initFrom(target, fresh, sd, path);
}
