/**
 * The training page: fine-tune a `vgg train` checkpoint (serve-demo --checkpoint) or a fresh small VGG on images
 * dropped into class boxes, or on a served data set (serve-demo --data fashion-mnist), in a Web Worker running the
 * training step graph on onnxruntime-web; live curves; classify with the trained weights; download them as a
 * `vgg train` checkpoint that `vgg predict`, `vgg eval` and `vgg export` read as they are.
 */
import { Chart, type ChartConfiguration, registerables } from "chart.js";
import { decodeIdx } from "../../src/data/idx-format.js";
import { type Preprocessing, preprocessImage, TORCHVISION_MEAN, TORCHVISION_STD } from "../../src/data/preprocessing.js";
import { type DataStats, type Image, presetTransforms } from "../../src/data/transforms.js";
import { type ClassScore, softmax, topK } from "../../src/predict/topk.js";
import { ORT_DIR, TRAIN_JSON, type TrainSetup } from "../../src/serve/protocol.js";
import type { ModelMeta } from "../../src/weights/meta.js";
import type { ModelOptions } from "../../src/zoo/model.js";
import { decodeFile } from "./image.js";
import type { FromWorker, StepReport, ToWorker, TrainInit, Trains } from "./train-protocol.js";

Chart.register(...registerables);

/** A fresh model when no checkpoint is served: small enough to train in a tab. */
const FRESH = { arch: "vgg11_bn", options: { widthDivisor: 16, head: "compact", inputSize: 32, dropout: 0 } as ModelOptions };

/** What a training run is asked for; unset values come from the page's inputs (the backend: ?backend=, else auto). */
interface TrainOptions {
  steps: number;
  batchSize?: number;
  lr?: number;
  momentum?: number;
  weightDecay?: number;
  trains?: Trains;
  seed?: number;
  backend?: TrainInit["backend"];
  /** Where to start (default: the page's choice: the checkpoint, else the served model, else a fresh model). */
  start?: Start;
}

type Start = "checkpoint" | "exported" | "fresh";

interface ClassBox {
  name: string;
  images: Image[];
}

declare global {
  interface Window {
    /** The page's state, for tests and the console. */
    vggTrain?: {
      state: string;
      setup: TrainSetup;
      steps: StepReport[];
      backend?: string;
      /** Loads `n` images of the served data set into the class boxes. */
      loadData(n: number): Promise<void>;
      /** Adds image files to class box `k` (what dropping them there does). */
      addImages(k: number, files: Blob[]): Promise<void>;
      /** Starts (or continues) training for `steps` steps with these settings; resolves when they are done. */
      train(o: TrainOptions): Promise<void>;
      classify(file: Blob): Promise<ClassScore[]>;
      exportWeights(): Promise<Uint8Array>;
    };
  }
}

const $ = <T extends HTMLElement = HTMLElement>(id: string): T => {
  const e = document.getElementById(id);
  if (!e) throw new Error(`page lacks #${id}`);
  return e as T;
};

function setState(state: string, message: string): void {
  document.body.dataset.state = state;
  $("status").textContent = message;
  if (window.vggTrain) window.vggTrain.state = state;
}

async function fetchOk(url: string): Promise<Response> {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return r;
}

/** The worker and the replies it owes. */
class Trainer {
  readonly worker = new Worker(new URL("./train-worker.js", import.meta.url), { type: "module" });
  private waiting: ((m: FromWorker) => boolean)[] = [];
  constructor(onStep: (s: StepReport) => void, onError: (message: string) => void, onFallback: (reason: string) => void) {
    this.worker.onmessage = (ev: MessageEvent<FromWorker>) => {
      const m = ev.data;
      if (m.type === "step") onStep(m);
      if (m.type === "fallback") onFallback(m.reason);
      if (m.type === "error") onError(m.message);
      this.waiting = this.waiting.filter((w) => !w(m));
    };
  }
  send(m: ToWorker, transfer: Transferable[] = []): void {
    this.worker.postMessage(m, transfer);
  }
  /** The next message `pick` accepts (or an error). */
  next<T>(pick: (m: FromWorker) => T | undefined): Promise<T> {
    return new Promise((resolve, reject) => {
      this.waiting.push((m) => {
        if (m.type === "error") {
          reject(new Error(m.message));
          return true;
        }
        const v = pick(m);
        if (v === undefined) return false;
        resolve(v);
        return true;
      });
    });
  }
}

async function main(): Promise<void> {
  setState("loading", "Loading…");
  const setup = (await (await fetchOk(TRAIN_JSON)).json()) as TrainSetup;
  const ck = setup.checkpoint;
  const ex = setup.exported;
  /** Where training starts: the served checkpoint, the served model's own weights, or a fresh small model. */
  const starts: Start[] = [...(ck ? ["checkpoint" as const] : []), ...(ex ? ["exported" as const] : []), "fresh"];
  let start: Start = starts[0];
  const boxes: ClassBox[] = [];
  const steps: StepReport[] = [];
  let served: { classes: string[]; images: Image[]; labels: number[] } | null = null;
  let trainer: Trainer | null = null;
  /** The settings the worker was started with; a change of them starts it again from the start weights. */
  let started = "";
  let meta: ModelMeta | null = null;

  const startSelect = $("start-from") as HTMLSelectElement;
  startSelect.replaceChildren(
    ...starts.map((k) => {
      const o = document.createElement("option");
      o.value = k;
      o.textContent =
        k === "checkpoint"
          ? `the checkpoint: ${ck?.meta.arch}, ${ck?.meta.labels.length} classes`
          : k === "exported"
            ? `the served model: ${ex?.arch}, ${ex?.labels.length} classes`
            : `a fresh ${FRESH.arch} (width /16, 32x32)`;
      return o;
    }),
  );
  startSelect.addEventListener("change", () => {
    start = startSelect.value as Start;
    resetBoxes();
  });
  const chart = new Chart(
    $("curve") as HTMLCanvasElement,
    {
      type: "line",
      data: {
        labels: [],
        datasets: [
          { label: "loss", data: [], borderColor: "#c0392b", yAxisID: "loss", pointRadius: 0 },
          { label: "batch accuracy", data: [], borderColor: "#2471a3", yAxisID: "acc", pointRadius: 0 },
        ],
      },
      options: {
        animation: false,
        responsive: false,
        scales: { loss: { position: "left", beginAtZero: true }, acc: { position: "right", min: 0, max: 1 } },
      },
    } as ChartConfiguration,
  );

  const onStep = (s: StepReport) => {
    steps.push(s);
    chart.data.labels?.push(s.step);
    chart.data.datasets[0].data.push(s.loss);
    chart.data.datasets[1].data.push(s.acc);
    chart.update();
    $("rate").textContent =
      `step ${s.step} (epoch ${s.epoch}): loss ${s.loss.toFixed(4)}, batch accuracy ${(100 * s.acc).toFixed(1)}%, ${s.ms.toFixed(0)} ms per step, ${s.imagesPerSecond.toFixed(1)} images/s`;
  };
  const onError = (message: string) => setState("error", `Training failed: ${message}`);
  let threads = 1;
  const showEngine = (backend: string, n: number, why?: string) => {
    threads = n;
    $("engine").textContent =
      `${backend === "webgpu" ? "WebGPU" : `WASM, ${n} thread${n === 1 ? "" : "s"}`} (in a worker)${why ? ` · ${why}` : ""}`;
    if (window.vggTrain) window.vggTrain.backend = backend;
  };

  /** The channels the model takes: the checkpoint's or the served model's, else the data's (1 for Fashion-MNIST), else RGB. */
  const channels = (): 1 | 3 =>
    start === "checkpoint" && ck
      ? ck.preprocessing.channels
      : start === "exported" && ex
        ? ex.preprocessing.channels
        : (served?.images[0]?.c ?? 3) === 1
          ? 1
          : 3;

  /** The preprocessing: the checkpoint's, else one whose description the downloaded weights carry (see meta). */
  function preprocessing(): { p: Preprocessing; stats: DataStats; preset: { size: number; channels: number } } {
    const c = channels();
    const native = served ? ([served.images[0].h, served.images[0].w] as [number, number]) : null;
    let stats: DataStats =
      c === 1
        ? { channels: 1, size: native, ...grayStats(served?.images ?? []) }
        : { channels: 3, size: native, mean: TORCHVISION_MEAN, std: TORCHVISION_STD };
    let size = 32;
    if (start === "exported" && ex) {
      // The served model's normalisation, recorded in the downloaded checkpoint so `vgg predict` applies it too.
      if (ex.preprocessing.bgr) throw new Error("the served model takes BGR input (Caffe's preset): fine-tune its checkpoint instead");
      const t = ex.preprocessing.transform;
      stats = { channels: c, size: native, mean: t.mean ?? stats.mean, std: t.std ?? stats.std };
      size = (ex.options.inputSize as number | undefined) ?? 224;
    }
    const preset = { size, channels: c };
    const p: Preprocessing = (start === "checkpoint" ? ck?.preprocessing : undefined) ?? {
      name: "checkpoint",
      channels: c,
      bgr: false,
      native: native ?? undefined,
      transform: presetTransforms(stats, preset, false),
    };
    return { p, stats, preset };
  }

  function renderBoxes(): void {
    $("classes").replaceChildren(
      ...boxes.map((b, i) => {
        const box = document.createElement("label");
        box.className = "class-box";
        box.dataset.index = String(i);
        const name = document.createElement("input");
        name.value = b.name;
        name.addEventListener("change", () => {
          b.name = name.value.trim() || String(i);
        });
        const count = document.createElement("span");
        count.textContent = `${b.images.length} images`;
        const pick = document.createElement("input");
        pick.type = "file";
        pick.multiple = true;
        pick.accept = "image/*";
        const add = (files: FileList | null) => addImages(i, Array.from(files ?? []));
        pick.addEventListener("change", () => void add(pick.files));
        box.addEventListener("dragover", (ev) => ev.preventDefault());
        box.addEventListener("drop", (ev) => {
          ev.preventDefault();
          void add(ev.dataTransfer?.files ?? null);
        });
        box.append(name, count, pick);
        return box;
      }),
    );
  }

  async function addImages(k: number, files: Blob[]): Promise<void> {
    for (const f of files) boxes[k].images.push((await decodeFile(f, channels())).image);
    served = null;
    renderBoxes();
    updateButtons();
  }

  function updateButtons(): void {
    const n = boxes.reduce((k, b) => k + b.images.length, 0);
    ($("train-go") as HTMLButtonElement).disabled = n === 0 || boxes.filter((b) => b.images.length > 0).length < 2;
  }

  async function loadData(n: number): Promise<void> {
    const d = setup.data;
    if (!d) throw new Error("no data is served: start `vgg serve-demo` with --data fashion-mnist");
    setState("loading", `Loading ${n} images of ${d.name}…`);
    const x = decodeIdx(new Uint8Array(await (await fetchOk(d.images)).arrayBuffer()), d.images);
    const y = decodeIdx(new Uint8Array(await (await fetchOk(d.labels)).arrayBuffer()), d.labels, { ndim: 1 });
    const [total, ...rest] = x.shape;
    const [c, h, w] = rest.length === 2 ? [1, rest[0], rest[1]] : rest;
    const per = c * h * w;
    const k = Math.min(n, total);
    const images: Image[] = [];
    for (let i = 0; i < k; i++) images.push({ data: (x.data as Uint8Array).slice(i * per, (i + 1) * per), c, h, w });
    served = { classes: d.classes, images, labels: Array.from((y.data as Uint8Array).subarray(0, k)) };
    boxes.length = 0;
    for (const name of d.classes) boxes.push({ name, images: [] });
    for (let i = 0; i < served.images.length; i++) boxes[served.labels[i]].images.push(served.images[i]);
    renderBoxes();
    updateButtons();
    // A start whose model takes other channels than the data's cannot train on it: a fresh model can.
    const wants = start === "checkpoint" ? ck?.preprocessing.channels : start === "exported" ? ex?.preprocessing.channels : c;
    const note =
      wants === c
        ? ""
        : ` The ${start === "checkpoint" ? "checkpoint" : "served model"} takes ${wants}-channel images: starting from a fresh model.`;
    if (note) {
      start = "fresh";
      startSelect.value = start;
    }
    setState("ready", `Loaded ${k} images of ${d.name} (${d.classes.length} classes), in the order they are served.${note}`);
  }

  /** x [N, C, H, W] and labels: the served images in their order, else the boxes' images class after class. */
  function trainingData(p: Preprocessing): { x: Float32Array; y: Int32Array } {
    const pairs: { img: Image; label: number }[] = served
      ? served.images.map((img, i) => ({ img, label: served?.labels[i] ?? 0 }))
      : boxes.flatMap((b, label) => b.images.map((img) => ({ img, label })));
    const first = preprocessImage(pairs[0].img, p);
    const per = first.c * first.h * first.w;
    const x = new Float32Array(pairs.length * per);
    for (let i = 0; i < pairs.length; i++) x.set(preprocessImage(pairs[i].img, p).data as Float32Array, i * per);
    return { x, y: Int32Array.from(pairs, (q) => q.label) };
  }

  async function train(o: TrainOptions): Promise<void> {
    if (o.start && o.start !== start) {
      if (!starts.includes(o.start)) throw new Error(`cannot start from ${o.start} here (can: ${starts.join(", ")})`);
      start = o.start;
      startSelect.value = start;
    }
    const { p, stats, preset } = preprocessing();
    const trains =
      o.trains ?? ((document.querySelector('input[name="trains"]:checked') as HTMLInputElement | null)?.value as Trains) ?? "last";
    const batchSize = o.batchSize ?? Number(($("batch") as HTMLInputElement).value);
    const backend = o.backend ?? (new URLSearchParams(location.search).get("backend") as TrainInit["backend"] | null) ?? "auto";
    const settings = JSON.stringify({
      trains,
      batchSize,
      lr: o.lr,
      momentum: o.momentum,
      seed: o.seed,
      backend,
      start,
      classes: boxes.map((b) => b.name),
    });
    if (!trainer || settings !== started) {
      trainer?.worker.terminate();
      steps.length = 0;
      chart.data.labels = [];
      for (const ds of chart.data.datasets) ds.data = [];
      trainer = new Trainer(onStep, onError, (reason) => showEngine("wasm", threads, reason));
      const labels = boxes.map((b) => b.name);
      const arch = start === "checkpoint" && ck ? ck.meta.arch : start === "exported" && ex ? ex.arch : FRESH.arch;
      const options: ModelOptions =
        start === "checkpoint" && ck
          ? { ...(ck.meta.options as ModelOptions), numClasses: labels.length }
          : start === "exported" && ex
            ? { ...(ex.options as ModelOptions), numClasses: labels.length }
            : { ...FRESH.options, numClasses: labels.length, inChannels: channels() };
      meta =
        start === "checkpoint" && ck
          ? { ...ck.meta, labels }
          : {
              arch,
              options,
              labels,
              mean: [...stats.mean],
              std: [...stats.std],
              data: { channels: stats.channels, size: stats.size },
              preset,
            };
      const url = start === "checkpoint" ? ck?.url : start === "exported" ? ex?.url : undefined;
      const weights = url
        ? { format: start === "exported" ? ("onnx" as const) : ("safetensors" as const), bytes: await (await fetchOk(url)).arrayBuffer() }
        : null;
      const init: TrainInit = {
        type: "init",
        wasmPaths: new URL(ORT_DIR, document.baseURI).href,
        backend,
        arch,
        options,
        weights,
        meta,
        trains,
        batchSize,
        lr: o.lr ?? Number(($("lr") as HTMLInputElement).value),
        momentum: o.momentum ?? Number(($("momentum") as HTMLInputElement).value),
        weightDecay: o.weightDecay ?? 5e-4,
        seed: o.seed ?? 0,
      };
      setState("running", "Building the training step…");
      trainer.send(init, weights ? [weights.bytes] : []);
      const ready = await trainer.next((m) => (m.type === "ready" ? m : undefined));
      showEngine(ready.backend, ready.threads, ready.fallbackReason);
      $("model-desc").textContent =
        `${init.arch}, ${labels.length} classes: ${ready.summary}, ${ready.trained.toLocaleString("en-US")} of ${ready.params.toLocaleString("en-US")} parameters`;
      const data = trainingData(p);
      trainer.send({ type: "data", ...data }, [data.x.buffer, data.y.buffer]);
      started = settings;
    }
    setState("running", "Training…");
    ($("train-stop") as HTMLButtonElement).disabled = false;
    trainer.send({ type: "train", steps: o.steps });
    const done = await trainer.next((m) => (m.type === "stopped" ? m : undefined));
    ($("train-stop") as HTMLButtonElement).disabled = true;
    ($("download") as HTMLButtonElement).disabled = false;
    const last = steps[steps.length - 1];
    setState("done", `Trained ${done.step} steps${last ? `: loss ${last.loss.toFixed(4)}` : ""}. Drop an image below to classify it.`);
  }

  async function classify(file: Blob): Promise<ClassScore[]> {
    if (!trainer || !meta) throw new Error("train first");
    const { p } = preprocessing();
    const { image } = await decodeFile(file, channels());
    const x = preprocessImage(image, p).data as Float32Array;
    const id = Math.random();
    trainer.send({ type: "classify", id, x });
    const logits = await trainer.next((m) => (m.type === "logits" && m.id === id ? m.data : undefined));
    const top = topK(softmax(logits), 5, meta.labels);
    $("top").replaceChildren(
      ...top.map((t) => {
        const li = document.createElement("li");
        li.dataset.label = t.label;
        li.textContent = `${t.label}: ${(100 * t.probability).toFixed(1)}%`;
        return li;
      }),
    );
    return top;
  }

  async function exportWeights(): Promise<Uint8Array> {
    if (!trainer) throw new Error("train first");
    trainer.send({ type: "export" });
    return trainer.next((m) => (m.type === "weights" ? m.bytes : undefined));
  }

  window.vggTrain = { state: "loading", setup, steps, loadData, addImages, train, classify, exportWeights };

  /** Class boxes named as the start's classes (two for a fresh model). */
  function resetBoxes(): void {
    if (served) return;
    boxes.length = 0;
    const names = start === "checkpoint" && ck ? ck.meta.labels : start === "exported" && ex ? ex.labels : ["class 0", "class 1"];
    for (const name of names) boxes.push({ name, images: [] });
    renderBoxes();
    updateButtons();
  }
  resetBoxes();
  if (setup.data) {
    const b = $("load-data") as HTMLButtonElement;
    b.hidden = false;
    $("data-count-label").hidden = false;
    b.textContent = `Load ${setup.data.name}`;
    b.addEventListener("click", () => void loadData(Number(($("data-count") as HTMLInputElement).value)).catch(onError));
  }
  $("add-class").addEventListener("click", () => {
    boxes.push({ name: `class ${boxes.length}`, images: [] });
    renderBoxes();
  });
  $("train-go").addEventListener(
    "click",
    () => void train({ steps: Number(($("steps") as HTMLInputElement).value) }).catch((e) => onError(String(e))),
  );
  $("train-stop").addEventListener("click", () => trainer?.send({ type: "stop" }));
  $("download").addEventListener("click", () => {
    void exportWeights().then((bytes) => {
      const a = document.createElement("a");
      a.href = URL.createObjectURL(new Blob([bytes as Uint8Array<ArrayBuffer>], { type: "application/octet-stream" }));
      a.download = "weights.safetensors";
      a.click();
    });
  });
  const input = $("file") as HTMLInputElement;
  input.addEventListener("change", () => {
    const f = input.files?.[0];
    if (f) void classify(f).catch((e) => onError(String(e)));
    input.value = "";
  });
  setState(
    "ready",
    setup.data ? "Load the data set, or drop images into the class boxes." : "Drop images into the class boxes (two classes at least).",
  );
}

/** Mean and std of 8-bit gray images, in [0, 1] units (what the Node loader computes for its data). */
function grayStats(images: Image[]): { mean: number[]; std: number[] } {
  let s = 0;
  let s2 = 0;
  let n = 0;
  for (const img of images) {
    for (const v of img.data) {
      s += v / 255;
      s2 += (v / 255) ** 2;
    }
    n += img.data.length;
  }
  if (n === 0) return { mean: [0.5], std: [0.25] };
  const mean = s / n;
  return { mean: [mean], std: [Math.sqrt(Math.max(s2 / n - mean * mean, 1e-12))] };
}

main().catch((err) => {
  console.error(err);
  setState("error", err instanceof Error ? err.message : String(err));
});
