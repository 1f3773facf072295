/**
 * The demo page: loads /model.json and the model it names, opens an onnxruntime-web session (WebGPU or WASM, via
 * src/runtime/ort-web.ts), and for each picked or dropped image shows the network input, the top-5 classes and a
 * feature tap's channels. Preprocessing, soft-max/top-k and the feature grid are the same code `vgg predict` runs.
 */

import { preprocessImage } from "../../src/data/preprocessing.js";
import { featureGrid } from "../../src/predict/grid-core.js";
import { type ClassScore, softmax, topK } from "../../src/predict/topk.js";
import { type DemoModel, INT8_OVER_BYTES, MODEL_JSON, ORT_DIR } from "../../src/serve/protocol.js";
import type { Tensor } from "../../src/tensor.js";
import { decodeFile, drawBitmap, drawGray, drawInput } from "./image.js";
import { InferClient } from "./infer-protocol.js";

interface DemoResult {
  file: string;
  top: ClassScore[];
  backend: string;
  ms: { decode: number; preprocess: number; inference: number };
}

declare global {
  interface Window {
    /** The last result, for tests and the console. */
    vggDemo?: { model: DemoModel; backend: string; threads: number; precision: string; results: DemoResult[]; lastInput?: Float32Array };
  }
}

const $ = <T extends HTMLElement = HTMLElement>(id: string): T => {
  const e = document.getElementById(id);
  if (!e) throw new Error(`page lacks #${id}`);
  return e as T;
};

type State = "loading" | "ready" | "running" | "done" | "error";

function setState(state: State, message: string): void {
  document.body.dataset.state = state;
  $("status").textContent = message;
}

const ms = (t: number) => (t < 10 ? t.toFixed(1) : t.toFixed(0));
const mib = (b: number) => (b >= 2 ** 20 ? `${(b / 2 ** 20).toFixed(1)} MiB` : `${(b / 1024).toFixed(0)} KiB`);

async function fetchOk(url: string): Promise<Response> {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return r;
}

function describePrep(m: DemoModel): string {
  const p = m.preprocessing;
  const [c, h, w] = m.input.shape;
  const parts = [p.name];
  if (p.native) parts.push(`native ${p.native[0]}x${p.native[1]}`);
  if (p.resizeShorter) parts.push(`shorter side ${p.resizeShorter}`);
  parts.push(`${c === 1 ? "gray" : p.bgr ? "BGR" : "RGB"} ${h}x${w}`);
  return parts.join(", ");
}

/** ImageNet's labels list synonyms ("tabby, tabby cat"): show the first, keep the rest in the tooltip. */
function renderTop(top: ClassScore[], short: boolean): void {
  const ol = $("top");
  ol.replaceChildren(
    ...top.map((t) => {
      const li = document.createElement("li");
      li.dataset.index = String(t.index);
      li.dataset.label = t.label;
      li.dataset.probability = String(t.probability);
      const label = document.createElement("div");
      label.className = "label";
      const name = document.createElement("span");
      name.textContent = short ? t.label.split(", ")[0] : t.label;
      name.title = `class ${t.index}: ${t.label}`;
      const pct = document.createElement("span");
      pct.textContent = `${(100 * t.probability).toFixed(1)}%`;
      label.append(name, pct);
      const bar = document.createElement("div");
      bar.className = "bar";
      const fill = document.createElement("div");
      fill.style.width = `${(100 * t.probability).toFixed(2)}%`;
      bar.append(fill);
      li.append(label, bar);
      return li;
    }),
  );
}

function renderTap(m: DemoModel, outputs: Record<string, Tensor> | undefined): void {
  const name = ($("tap-select") as HTMLSelectElement).value;
  const tap = m.taps.find((t) => t.name === name);
  if (!tap || !outputs?.[name]) return;
  const t = outputs[name];
  const grid = featureGrid(t.data as Float32Array, t.shape.slice(1));
  drawGray($("tap") as HTMLCanvasElement, grid);
  $("tap-caption").textContent =
    `[${tap.shape.join(", ")}]${tap.shape.length === 3 ? `: ${tap.shape[0]} channels, each min-max scaled` : ""}`;
}

async function main(): Promise<void> {
  setState("loading", "Loading the model description…");
  const m = (await (await fetchOk(MODEL_JSON)).json()) as DemoModel;
  const [c, h, w] = m.input.shape;
  $("model-name").textContent = m.arch ? `${m.arch} (${m.name})` : m.name;
  // The int8 export for a big model (a quarter of the bytes to download and hold), unless ?precision= says otherwise.
  const asked = new URLSearchParams(location.search).get("precision");
  const int8 = m.int8 && asked !== "fp32" && (asked === "int8" || m.bytes > INT8_OVER_BYTES) ? m.int8 : undefined;
  const file = int8 ?? { url: m.url, bytes: m.bytes };
  $("model-size").textContent = int8 ? `${mib(int8.bytes)} (int8 export; fp32 ${mib(m.bytes)})` : mib(m.bytes);
  $("model-input").textContent = `[N, ${c}, ${h}, ${w}] → ${m.logits.classes} classes (${m.labelsFrom} labels)`;
  $("model-prep").textContent = describePrep(m);

  setState("loading", `Downloading ${m.name}${int8 ? " (int8)" : ""} (${mib(file.bytes)})…`);
  const t0 = performance.now();
  const bytes = await (await fetchOk(file.url)).arrayBuffer();
  const t1 = performance.now();
  setState("loading", "Starting ONNX Runtime…");
  // The session runs in a worker: a run never freezes the page.
  const session = new InferClient();
  const rt = await session.open(new URL(ORT_DIR, document.baseURI).href, bytes, m.input.batchDim ? { [m.input.batchDim]: 1 } : undefined);
  const t2 = performance.now();
  const engine =
    rt.backend === "webgpu"
      ? "WebGPU"
      : `WASM, ${rt.threads} thread${rt.threads === 1 ? "" : "s"}${rt.crossOriginIsolated ? "" : " (not cross-origin isolated)"}`;
  $("engine").textContent = `${engine} · onnxruntime-web ${rt.version}`;
  $("engine").dataset.backend = rt.backend;
  if (rt.fallbackReason) $("engine").title = rt.fallbackReason;

  // One run on zeros: the first run pays for kernel setup (and shader compilation on WebGPU).
  const zeros: Tensor = { dtype: "float32", shape: [1, c, h, w], data: new Float32Array(c * h * w) };
  const t3 = performance.now();
  await session.run({ [m.input.name]: zeros });
  const t4 = performance.now();
  $("timing").textContent = `model download ${ms(t1 - t0)} ms · session ${ms(t2 - t1)} ms · warm-up run ${ms(t4 - t3)} ms`;

  const select = $("tap-select") as HTMLSelectElement;
  select.replaceChildren(
    ...m.taps.map((t) => {
      const o = document.createElement("option");
      o.value = t.name;
      o.textContent = t.name;
      return o;
    }),
  );
  $("tap-figure").hidden = m.taps.length === 0;
  let last: Record<string, Tensor> | undefined;
  select.addEventListener("change", () => renderTap(m, last));
  window.vggDemo = { model: m, backend: rt.backend, threads: rt.threads, precision: int8 ? "int8" : "fp32", results: [] };

  let busy = false;
  const classify = async (file: File) => {
    if (busy) return;
    busy = true;
    try {
      setState("running", `Classifying ${file.name}…`);
      const a = performance.now();
      const { bitmap, image } = await decodeFile(file, m.preprocessing.channels);
      const b = performance.now();
      const x = preprocessImage(image, m.preprocessing);
      if (x.c !== c || x.h !== h || x.w !== w)
        throw new Error(`preprocessing gives [${x.c}, ${x.h}, ${x.w}], the model takes [${c}, ${h}, ${w}]`);
      const d = performance.now();
      const out = await session.run({ [m.input.name]: { dtype: "float32", shape: [1, c, h, w], data: (x.data as Float32Array).slice() } });
      const e = performance.now();
      last = out;
      const top = topK(softmax(out[m.logits.name].data as Float32Array), 5, m.labels);

      $("panels").hidden = false;
      drawBitmap($("original") as HTMLCanvasElement, bitmap);
      $("original-caption").textContent = `${file.name}: ${image.w}x${image.h}`;
      bitmap.close();
      drawInput($("input") as HTMLCanvasElement, x.data as Float32Array, [c, h, w], m.preprocessing);
      $("input-caption").textContent = `network input [${c}, ${h}, ${w}], normalisation undone for display`;
      renderTop(top, m.labelsFrom === "imagenet");
      renderTap(m, out);
      const result: DemoResult = {
        file: file.name,
        top,
        backend: rt.backend,
        ms: { decode: b - a, preprocess: d - b, inference: e - d },
      };
      if (window.vggDemo) {
        window.vggDemo.results.push(result);
        window.vggDemo.lastInput = x.data as Float32Array;
      }
      $("timing").textContent =
        `${ms(e - d)} ms per image on ${engine.split(",")[0]} (inference; decode ${ms(b - a)} ms, preprocess ${ms(d - b)} ms)`;
      setState("done", `${top[0].label}: ${(100 * top[0].probability).toFixed(1)}%`);
    } catch (err) {
      console.error(err);
      setState("error", `Could not classify ${file.name}: ${err instanceof Error ? err.message : String(err)}`);
    } finally {
      busy = false;
    }
  };

  const input = $("file") as HTMLInputElement;
  input.addEventListener("change", () => {
    const f = input.files?.[0];
    if (f) void classify(f);
    input.value = "";
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (ev) => {
    ev.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => {
    ev.preventDefault();
    drop.classList.remove("over");
    const f = ev.dataTransfer?.files?.[0];
    if (f) void classify(f);
  });
  setState("ready", "Ready: drop an image or click above.");
}

main().catch((err) => {
  console.error(err);
  setState("error", err instanceof Error ? err.message : String(err));
});
