/**
 * The inference walk with Winograd F(4x4, 3x3) convolutions (src/ops/winograd.ts), for ORT's CPU provider: MLAS has
 * no Winograd, and its direct convolution already runs near the machine's peak, so the only way past it is fewer
 * multiplications.
 *
 * Between Winograd layers activations stay in a "tiled rows" layout instead of NCHW: a matrix [R, N*C] whose rows
 * are the map's positions in tile order (all positions (a, b) of every m x m tile together), then a zero row for the
 * convolution's padding. A convolution gathers its 6x6 input tiles straight from those rows (one Gather of runs of
 * N*C floats, no transposes), and its output transform writes the next layout; bias, ReLU and 2x2 max-pooling work
 * on the rows as they are. Only where a layer has no tiled form (the head, LRN, a 1x1 conv) is the map put back into
 * NCHW. Per output tile and layer:
 *   rows -> Gather [36, T, N*C] -> V = BB [36, 36] x . -> M = V [36, T*N, C] x U [36, C, O]
 *        -> AA' [17, 36] x M -> [17, T*N, O] (+ bias; AA' is A^T (x) A^T with a zero 17th row: the next zero row)
 * U = (G (x) G) g is computed from the weights by ORT's constant folding when the session is created.
 */
import { VggError } from "../errors.js";
import { type GraphBuilder, i } from "../onnx/builder.js";
import { reshape, transpose } from "../ops/emit.js";
import { opOf } from "../ops/index.js";
import { f43 } from "../ops/winograd.js";
import type { Layer } from "../zoo/model.js";
import { valueName } from "./walk.js";

/** Which 3x3 convs use Winograd: "auto" (by the measured rule in winogradWins), all, or none. */
export type WinogradChoice = "auto" | "on" | "off";

/** A map in tiled rows: value [R, N*C]; rows of m x m tiles over a th x tw grid; `zero` is a row of zeros. */
interface Tiled {
  value: string;
  m: number;
  th: number;
  tw: number;
  H: number;
  W: number;
  C: number;
  zero: number;
}

/** The row of position (h, w), or the zero row outside the map (the padding, and tiles past its edge). */
function rowOf(t: Tiled, h: number, w: number): number {
  if (h < 0 || w < 0 || h >= t.H || w >= t.W) return t.zero;
  const { m, th, tw } = t;
  return ((h % m) * m + (w % m)) * th * tw + Math.floor(h / m) * tw + Math.floor(w / m);
}

/**
 * Measured per layer on 2 cores (ORT's profiler, VGG16 at 224, batch 8; bench/results/inference.md): Winograd wins
 * from 128 input channels on (conv2_2 and deeper), where the 36 GEMMs dominate the transforms' memory traffic.
 * With 64 (conv1_2, conv2_1) the transforms cost more than they save (conv2_1: 154 ms against 118 for ORT's Conv,
 * the layout change included), and conv1_1's 3 channels make the output transform the whole cost. Maps under 4x4
 * pad each 4x4 tile mostly with zeros (vgg11_bn at 32, batch 128: the same speed with or without its 2x2 layers).
 */
export function winogradWins(layer: Layer): boolean {
  return layer.kind === "conv" && layer.attrs.kernel === 3 && layer.attrs.inC >= 128 && Math.min(layer.inShape[1], layer.inShape[2]) >= 4;
}

function fromNchw(g: GraphBuilder, x: string, C: number, H: number, W: number, name: string): Tiled {
  // A 2-D transpose [N*C, H*W] -> [H*W, N*C]: ORT moves one axis fast, where the 4-D permutation [2, 3, 0, 1]
  // of the same data ran at a third of the speed.
  const rows = transpose(g, reshape(g, x, [-1, H * W]), [1, 0], `${name}_to_rows`);
  const value = g.op1("Pad", [rows, g.shapeConst([0, 0, 1, 0])], undefined, `${name}_zero_row`);
  return { value, m: 1, th: H, tw: W, H, W, C, zero: H * W };
}

function toNchw(g: GraphBuilder, t: Tiled, name: string): string {
  const order: number[] = [];
  for (let h = 0; h < t.H; h++) for (let w = 0; w < t.W; w++) order.push(rowOf(t, h, w));
  const rows = g.op1("Gather", [t.value, g.constant("int64", [order.length], order)], { axis: i(0) }, `${name}_positions`);
  return reshape(g, transpose(g, rows, [1, 0], `${name}_to_nchw`), [-1, t.C, t.H, t.W]);
}

/** The conv's weight in the Winograd domain, U [36, C, O], and its bias, with a following BN folded into both. */
function foldedKernel(
  g: GraphBuilder,
  p: (s: string) => string,
  bn: ((s: string) => string) | undefined,
  eps: number,
  C: number,
  O: number,
  name: string,
) {
  const cow = reshape(g, transpose(g, reshape(g, p("weight"), [O, C, 9]), [1, 0, 2]), [C * O, 9]);
  const gg = g.constant("float32", [36, 9], Array.from(f43.kernel()));
  let u = reshape(g, g.op1("Gemm", [gg, cow], { transB: i(1) }, `${name}_wino_kernel`), [36, C, O]);
  let bias = p("bias");
  if (bn) {
    const scale = g.op1("Div", [bn("weight"), g.op1("Sqrt", [g.op1("Add", [bn("running_var"), g.scalar(eps)])])]);
    u = g.op1("Mul", [u, scale]);
    bias = g.op1("Add", [g.op1("Mul", [g.op1("Sub", [bias, bn("running_mean")]), scale]), bn("bias")]);
  }
  // The 17th row block of the output transform is the next layout's zero row: no bias there.
  const mask = g.constant("float32", [17, 1, 1], [...new Array(16).fill(1), 0]);
  return { u, bias17: g.op1("Mul", [reshape(g, bias, [1, 1, O]), mask], undefined, `${name}_bias17`) };
}

function winogradConv(g: GraphBuilder, t: Tiled, u: string, bias17: string, O: number, name: string): Tiled {
  const th = Math.ceil(t.H / 4);
  const tw = Math.ceil(t.W / 4);
  const T = th * tw;
  const idx: number[] = [];
  for (let r = 0; r < 6; r++)
    for (let s = 0; s < 6; s++)
      for (let ti = 0; ti < th; ti++) for (let tj = 0; tj < tw; tj++) idx.push(rowOf(t, 4 * ti + r - 1, 4 * tj + s - 1));
  const tiles = g.op1("Gather", [t.value, g.constant("int64", [36, T], idx)], { axis: i(0) }, `${name}_tiles`);
  const bb = g.constant("float32", [36, 36], Array.from(f43.input()));
  const v = g.op1("MatMul", [bb, reshape(g, tiles, [36, -1])], undefined, `${name}_wino_in`);
  const m = g.op1("MatMul", [reshape(g, v, [36, -1, t.C]), u], undefined, `${name}_wino_gemm`);
  const aa = g.constant("float32", [17, 36], [...f43.output(), ...new Array(36).fill(0)]);
  const y = g.op1("MatMul", [aa, reshape(g, m, [36, -1])], undefined, `${name}_wino_out`);
  const biased = g.op1("Add", [reshape(g, y, [17, -1, O]), bias17], undefined, `${name}_rows`);
  return { value: reshape(g, biased, [17 * T, -1]), m: 4, th, tw, H: t.H, W: t.W, C: O, zero: 16 * T };
}

/** 2x2 max-pool, stride 2, on tiled rows: the max of four Gathers (one per window position), in m/2 tiles. */
function tiledMaxPool(g: GraphBuilder, t: Tiled, name: string): Tiled {
  const Ho = Math.floor(t.H / 2);
  const Wo = Math.floor(t.W / 2);
  const m = t.m % 2 === 0 ? t.m / 2 : 1;
  const th = m === 1 ? Ho : t.th;
  const tw = m === 1 ? Wo : t.tw;
  const out: Tiled = { value: "", m, th, tw, H: Ho, W: Wo, C: t.C, zero: m * m * th * tw };
  const picks: string[] = [];
  for (const [di, dj] of [
    [0, 0],
    [0, 1],
    [1, 0],
    [1, 1],
  ]) {
    const idx: number[] = [];
    for (let a = 0; a < m; a++)
      for (let b = 0; b < m; b++)
        for (let ti = 0; ti < th; ti++)
          for (let tj = 0; tj < tw; tj++) {
            const h = ti * m + a;
            const w = tj * m + b;
            idx.push(h < Ho && w < Wo ? rowOf(t, 2 * h + di, 2 * w + dj) : t.zero);
          }
    idx.push(t.zero);
    picks.push(g.op1("Gather", [t.value, g.constant("int64", [idx.length], idx)], { axis: i(0) }, `${name}_pick`));
  }
  out.value = g.op1("Max", picks, undefined, `${name}_rows`);
  return out;
}

/**
 * Emits `layers` in inference mode (as walk.ts's emitInference) with Winograd for the chosen 3x3 convs. `each` sees
 * the NCHW output of every layer whose tap is in `taps` (a tiled map is put back into NCHW only for those).
 */
export function emitWinogradInference(
  g: GraphBuilder,
  layers: readonly Layer[],
  x: string,
  param: (layer: Layer, suffix: string) => string,
  opts: { choice: WinogradChoice; taps: ReadonlySet<string>; each?: (layer: Layer, y: string) => void },
): string {
  const use = (l: Layer) =>
    l.kind === "conv" && l.attrs.kernel === 3 && (opts.choice === "on" || (opts.choice === "auto" && winogradWins(l)));
  let nchw: string | undefined = x;
  let tiled: Tiled | undefined;
  const asNchw = (name: string): string => {
    if (nchw === undefined && tiled) nchw = toNchw(g, tiled, name);
    return nchw as string;
  };
  for (let k = 0; k < layers.length; k++) {
    const layer = layers[k];
    const name = valueName(layer);
    const next = layers[k + 1];
    if (layer.kind === "conv" && use(layer)) {
      const [C, H, W] = layer.inShape;
      const t = tiled ?? fromNchw(g, asNchw(name), C, H, W, name);
      const bn = next?.kind === "batchnorm" && !next.tap ? next : undefined;
      const eps = bn ? bn.attrs.eps : 0;
      const { u, bias17 } = foldedKernel(g, (s) => param(layer, s), bn && ((s) => param(bn, s)), eps, C, layer.attrs.outC, name);
      tiled = winogradConv(g, t, u, bias17, layer.attrs.outC, name);
      nchw = undefined;
      if (bn) k++;
    } else if (tiled && layer.kind === "relu") {
      tiled = { ...tiled, value: g.op1("Relu", [tiled.value], undefined, `${name}_rows`) };
      nchw = undefined;
    } else if (tiled && layer.kind === "maxpool" && layer.attrs.kernel === 2 && layer.attrs.stride === 2) {
      tiled = tiledMaxPool(g, tiled, name);
      nchw = undefined;
    } else {
      const h = asNchw(`${name}_in`);
      nchw = opOf(layer.kind).forward({ g, param: (s) => param(layer, s) }, layer.attrs, h, layer.inShape, name);
      tiled = undefined;
    }
    if (layer.tap && opts.taps.has(layer.tap)) opts.each?.(layer, asNchw(name));
  }
  return asNchw("out");
}

/**
 * The choice a session gets: Winograd is for fp32 on the CPU (in fp16 F(4x4, 3x3)'s transforms lose too much, int8
 * quantizes Conv nodes, and a GPU provider has its own convolution), so "auto" turns it off elsewhere and "on" is
 * refused there.
 */
export function resolveWinograd(choice: WinogradChoice | undefined, precision: string, device: string): WinogradChoice {
  const c = choice ?? "auto";
  if (precision === "fp32" && device === "cpu") return c;
  if (c === "on") throw new VggError(`--winograd on needs --precision fp32 on the cpu device (got ${precision} on ${device})`);
  return "off";
}
