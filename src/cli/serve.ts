/** `vgg serve`: models over the Open Inference Protocol (KServe v2 / Triton HTTP) with dynamic batching. */
import * as fs from "node:fs";
import { type Command, InvalidArgumentError, Option } from "commander";
import { PRESETS, type PresetName } from "../data/preprocessing.js";
import { VggError } from "../errors.js";
import type { DeviceChoice } from "../runtime/device.js";
import { type ModelSource, ServedModel } from "../serve/models.js";
import { InferenceServer } from "../serve/server.js";
import { addDeviceOption, commandDevice, type ModelFlags, port, positiveInt, resolveModel } from "./options.js";
import { PACKAGE_VERSION } from "./version.js";

interface ServeFlags {
  model?: string[];
  name?: string[];
  weights?: string;
  arch?: string;
  host: string;
  port: number;
  maxBatch: number;
  maxDelayMs: number;
  maxQueue: number;
  maxBodyMb: number;
  threads?: number;
  device: DeviceChoice;
  labels?: string;
  preset?: PresetName;
  checkpoint?: string;
}

const HOW_TO =
  "no model given: serve an exported model, or weights by name\n" +
  "  vgg serve --model vgg11_bn.onnx          (from `vgg export --arch vgg11_bn --weights imagenet --out vgg11_bn.onnx`)\n" +
  "  vgg serve --weights imagenet --arch vgg16";

const collect = (v: string, all: string[] | undefined) => [...(all ?? []), v];

function milliseconds(v: string): number {
  const n = Number(v);
  if (v.trim() === "" || !Number.isFinite(n) || n < 0) throw new InvalidArgumentError("not a number of milliseconds >= 0.");
  return n;
}

export function register(program: Command): void {
  const cmd = program
    .command("serve")
    .description("serve models over the Open Inference Protocol (KServe v2, Triton's HTTP API) with dynamic batching")
    .option("--model <file.onnx>", "a model to serve (repeat the flag for several)", collect)
    .option("--name <name>", "a model's name, in --model order (default: the file's name without .onnx; --arch for --weights)", collect)
    .option("--weights <file|name|url>", "serve weights without an export step: a file, imagenet, an entry name or a URL (with --arch)")
    .option("--arch <name>", "the model --weights are for (not needed for a `vgg train` checkpoint)")
    .option("--host <addr>", "address to bind", "127.0.0.1")
    .option("--port <p>", "port (0: any free port)", port, 8000)
    .option("--max-batch <n>", "rows in one batch at most", positiveInt, 8)
    .option("--max-delay-ms <ms>", "how long a request waits for others to batch with", milliseconds, 5)
    .option("--max-queue <n>", "requests waiting at most; more are answered 429", positiveInt, 256)
    .option("--max-body-mb <n>", "largest request body in MiB; larger ones are answered 413", positiveInt, 64)
    .option("--threads <n>", "ONNX Runtime threads per model (default: every core)", positiveInt)
    .option("--labels <file>", "class names for /classify: one per line, or a JSON array (default: the model's, or ImageNet's)")
    .addOption(new Option("--preset <name>", "preprocessing for /classify (default: the model's, else torchvision)").choices(PRESETS))
    .option("--checkpoint <file.safetensors>", "the `vgg train` checkpoint a model was exported from: its labels and preprocessing");
  addDeviceOption(cmd).action(async (o: ServeFlags) => {
    const sources = modelSources(o);
    const device = await commandDevice(o.device);
    const opts = {
      labels: o.labels,
      preset: o.preset,
      checkpoint: o.checkpoint,
      threads: o.threads,
      device,
      batching: { maxBatch: o.maxBatch, maxDelayMs: o.maxDelayMs, maxQueue: o.maxQueue },
    };
    let server: InferenceServer | undefined;
    const models: ServedModel[] = [];
    for (const src of sources) models.push(await ServedModel.describe(src, opts, (m, rows) => server?.metrics.batch(m, rows)));
    server = new InferenceServer(models, PACKAGE_VERSION, { maxBodyBytes: o.maxBodyMb * 2 ** 20 });
    const url = await server.listen(o.port, o.host);
    console.log(`vgg serve: listening on ${url}/v2 (Open Inference Protocol)`);
    stopOnSignals(server);
    for (const m of models) {
      await m.open();
      const shape = (s: { name: string; shape: number[] }) => `${s.name} [${s.shape.join(", ")}]`;
      console.log(
        `  ${m.name}: ${m.inputs.map(shape).join(", ")} -> ${m.outputs.map(shape).join(", ")}  POST ${url}/v2/models/${encodeURIComponent(m.name)}/infer`,
      );
    }
    console.log(`ready: ${models.length} model${models.length > 1 ? "s" : ""}, batches of up to ${o.maxBatch} within ${o.maxDelayMs} ms`);
  });
}

/** The models the flags name, each with its name; names must be unique (they are the URLs). */
function modelSources(flags: ServeFlags): ModelSource[] {
  const o = { ...flags, model: flags.model ?? [], name: flags.name ?? [] };
  if (o.model.length === 0 && !o.weights) throw new VggError(HOW_TO);
  for (const f of o.model) if (!fs.existsSync(f)) throw new VggError("no such file", f);
  const sources: ModelSource[] = o.model.map((file) => ({ file }));
  if (o.weights) {
    const { arch, options } = resolveModel({ arch: o.arch, weights: o.weights } as ModelFlags);
    sources.push({ weights: o.weights, arch, options });
  } else if (o.arch) throw new VggError("--arch names the model of --weights: give --weights too");
  if (o.name.length > sources.length)
    throw new VggError(`${o.name.length} --name flags for ${sources.length} model${sources.length > 1 ? "s" : ""}`);
  o.name.forEach((name, i) => {
    if (!/^[\w.-]+$/.test(name)) throw new VggError(`--name '${name}': use letters, digits, '.', '_' and '-' (it is part of the URL)`);
    sources[i].name = name;
  });
  const names = sources.map((s) => s.name ?? ("file" in s ? s.file.replace(/^.*[\\/]/, "").replace(/\.onnx$/i, "") : s.arch));
  const dup = names.find((n, i) => names.indexOf(n) !== i);
  if (dup) throw new VggError(`two models would be named '${dup}': give each a --name`);
  return sources;
}

/** SIGTERM or Ctrl-C: stop accepting, answer what is queued, exit 0; a second signal exits at once. */
function stopOnSignals(server: InferenceServer): void {
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) process.exit(signal === "SIGTERM" ? 143 : 130);
    stopping = true;
    console.log(`vgg serve: ${signal}: answering the queued requests, then stopping`);
    void server.shutdown().then(() => {
      console.log("vgg serve: stopped");
      process.exit(0);
    });
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}
