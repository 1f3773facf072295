import * as fs from "node:fs";
import { type Command, Option } from "commander";
import { PRESETS, type PresetName } from "../data/preprocessing.js";
import { VggError } from "../errors.js";
import { createDemoServer, describeDemoModel, describeInt8, listen, trainSetup } from "../serve/demo.js";
import { port } from "./options.js";

interface ServeFlags {
  model?: string;
  port: number;
  host: string;
  labels?: string;
  preset?: PresetName;
  checkpoint?: string;
  data?: string;
  int8?: string;
}

const HOW_TO =
  "no model given: export one with both logits and a feature tap, e.g.\n" +
  "  vgg export --arch vgg11_bn --width-divisor 16 --num-classes 10 --tap relu1_1,logits --out demo.onnx\n" +
  "  (or --arch vgg16 --weights vgg16-397923af.pth --tap relu1_2,logits for ImageNet's classes)\n" +
  "then: vgg serve-demo --model demo.onnx";

export function register(program: Command): void {
  program
    .command("serve-demo")
    .description("serve the browser demo (onnxruntime-web: WebGPU or WASM) with a model exported by `vgg export`")
    .option("--model <file.onnx>", "the model to run in the page (exported with --tap NAME,logits to also see a feature map)")
    .option("--port <p>", "port (0: any free port)", port, 8080)
    .option("--host <addr>", "address to bind", "127.0.0.1")
    .option(
      "--labels <file>",
      "class names: one per line, or a JSON array (default: the model's, --checkpoint's, ImageNet's for 1000 classes, or indices)",
    )
    .addOption(new Option("--preset <name>", "preprocessing (default: the model's, else torchvision)").choices(PRESETS))
    .option(
      "--checkpoint <file.safetensors>",
      "the `vgg train` checkpoint the model was exported from: its labels and preprocessing; /train.html fine-tunes it",
    )
    .option("--data <spec>", "a data set /train.html can load instead of dropped images (its test split), e.g. fashion-mnist")
    .option(
      "--int8 <file.onnx>",
      "an int8 export of the same model (`vgg export --precision int8`): the page runs it when --model is over 256 MiB",
    )
    .action(async (o: ServeFlags) => {
      if (!o.model) {
        // A usage error whose message is the recipe: several lines, no stack, exit status 1.
        console.error(`vgg: ${HOW_TO}`);
        process.exitCode = 1;
        return;
      }
      if (!fs.existsSync(o.model)) throw new VggError("no such file", o.model);
      const info = describeDemoModel(o.model, { labels: o.labels, preset: o.preset, checkpoint: o.checkpoint });
      if (o.int8) info.int8 = describeInt8(info, o.int8, { labels: o.labels, preset: o.preset, checkpoint: o.checkpoint });
      const train = await trainSetup(info, { checkpoint: o.checkpoint, data: o.data });
      const server = createDemoServer({ model: o.model, info, train, int8: o.int8 });
      const url = await listen(server, o.port, o.host);
      const stop = () => {
        server.close(() => process.exit(0));
        server.closeAllConnections();
      };
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
      const mib = (info.bytes / 2 ** 20).toFixed(1);
      const taps = info.taps.length ? `, taps ${info.taps.map((t) => t.name).join(", ")}` : ", no feature tap";
      if (info.bytes > 256 * 2 ** 20 && !info.int8) {
        console.error(
          `vgg: warning: ${mib} MiB is heavy for a browser tab (the page holds it and ORT copies it); an int8 export (--int8, a quarter of the size) or a smaller model, e.g. --width-divisor or --head compact, loads faster`,
        );
      }
      console.log(`serving ${info.name} (${info.arch ?? "model"}, ${mib} MiB, ${info.logits.classes} classes${taps}) at ${url}`);
      console.log(
        `train in the page: ${url}train.html${train.setup.checkpoint ? " (fine-tunes --checkpoint)" : ""}${train.setup.data ? ` (data: ${train.setup.data.name})` : ""}`,
      );
    });
}
