/**
 * README runs as written: every shell command in README.md's ```sh blocks is run here, in README order, in a
 * sandbox directory holding the files the commands name, or it is listed in NOT_RUN with the reason. A command added
 * to README that is neither fails this test.
 *
 * `vgg` is run as README says (`npx vgg`; from the sandbox, `npm exec --prefix <package>`). Usage synopses run
 * with their optional [...] parts left out. What the sandbox cannot have is stood in for, and only that:
 *   - the published 528 MB weights (no network in tests): `imagenet` and the torchvision file names are a VGG16 at
 *     width /16 with 1000 classes, so commands on vgg16 get `--width-divisor 16` (and `--input-size 32` where the
 *     command takes one); the download path itself is tested on a loopback server (weights-hub, weights-flags);
 *   - training runs get `--epochs 1` (the README's runs take minutes to hours; `npm run main` is CI's main job).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import sharp from "sharp";
import { FASHION_MNIST_DIR } from "../src/data/spec.js";
import { writeNpy } from "../src/io/npy.js";
import { initWeights } from "../src/weights/init.js";
import { writeSafetensors } from "../src/weights/safetensors.js";
import { buildModel } from "../src/zoo/model.js";
import { BIN, ROOT, tmp } from "./helpers.js";

/** Commands not run, each with why (matched against the command as README writes it). */
const NOT_RUN: [RegExp, string][] = [
  [/^apt-get /, "installs system packages: CI (.ci/run) runs exactly this before the tests"],
  [/^npm run build:web$/, "npm test runs it before the tests"],
  [
    /^vgg weights pull /,
    "downloads 1 GB from download.pytorch.org; `vgg weights pull` runs against a loopback mirror in weights-hub.test.ts",
  ],
  [/^vgg serve-demo /, "a server that runs until stopped; serve-demo, web-demo and web-train tests start it on port 0 and stop it"],
  [/^vgg serve /, "a server that runs until stopped; serve.test.ts starts it (files, --weights, several models) on port 0"],
  [/^python3 scripts\/oip_client\.py /, "a client of a running server (above); serve-clients.test.ts runs it against one"],
  [/^docker run .*tritonserver /, "Triton's container (Docker, a multi-GB image); triton-export.test.ts checks the repository it is given"],
  [/^curl .*\/v2\/models\//, "a request to a running server (Triton or `vgg serve`, above); serve-clients.test.ts sends them with curl"],
  [/^kubectl apply /, "needs a Kubernetes cluster with KServe"],
  [/ \.\.\.( |$)/, "an overview line, not a command (each command it names is below it in README)"],
  [/^vgg reproduce /, "trains six nets (90 minutes by default); reproduce-cli.test.ts runs it at the smallest settings"],
  [
    /^vgg train --arch vgg11_bn --head compact --data fashion-mnist --out runs\/a \[/,
    "30 epochs of Fashion-MNIST (the synopsis); its flags run on small data in the train tests",
  ],
  [
    /^vgg train --arch vgg13_bn --head compact --width-divisor 2 --data fashion-mnist --epochs 36 /,
    "the 95% run, 82 minutes; even one step of it takes over 2 minutes (SWA's BN pass over 60,000 images, eight " +
      "scorings of the 10,000 test images); its flags run on small data in cli-flag-runs, precision and train-averaging-cli, and " +
      "torch-eval-fmnist checks a Fashion-MNIST run's scores against PyTorch",
  ],
];

/** The shell commands of README's ```sh blocks: comments dropped, continuation and synopsis lines joined. */
export function readmeCommands(md: string): string[] {
  const cmds: string[] = [];
  for (const [, block] of md.matchAll(/```sh\n([\s\S]*?)```/g)) {
    let cur = "";
    for (const line of block.split("\n")) {
      if (/^\s*(#|$)/.test(line)) {
        if (cur) cmds.push(cur);
        cur = "";
        continue;
      }
      const code = line.replace(/\s+#\s.*$/, "").trim();
      if (cur && (cur.endsWith("\\") || /^\s/.test(line))) cur = `${cur.replace(/\\$/, "").trimEnd()} ${code}`;
      else {
        if (cur) cmds.push(cur);
        cur = code;
      }
    }
    if (cur) cmds.push(cur);
  }
  return cmds;
}

/** The command as the sandbox runs it (see the header for each rule). */
function standIn(cmd: string): string {
  let c = cmd.replace(/\s*\[[^\]]*\]/g, "").trim();
  c = c.replace(/--(weights|init) imagenet/g, "--$1 vgg16.pth");
  const onVgg16 = /--arch vgg16( |$)/.test(c) || (/^vgg distance /.test(c) && !/--arch/.test(c));
  if (onVgg16) c += /^vgg (distance|convert|infer) /.test(c) ? " --width-divisor 16" : " --width-divisor 16 --input-size 32";
  if (/^vgg train /.test(c)) c += " --epochs 1 --batch-size 4 --no-progress";
  return c;
}

async function image(file: string, seed: number, w = 48, h = 40): Promise<void> {
  const px = Buffer.alloc(w * h * 3);
  for (let i = 0; i < px.length; i++) px[i] = (i * 13 + seed * 71 + ((i / 3) % w) * 3) % 256;
  await sharp(px, { raw: { width: w, height: h, channels: 3 } }).toFile(file);
}

function vggIn(dir: string, args: string[]): void {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd: dir, encoding: "utf8", timeout: 120_000 });
  assert.equal(r.status, 0, `${args.join(" ")}: ${r.stderr}`);
}

/** The files README's commands name. */
async function sandbox(): Promise<string> {
  const dir = tmp("vgg-readme-");
  for (const d of ["photos", "more", ...[0, 1, 2, 3, 4].flatMap((c) => [`photos/train/c${c}`, `photos/val/c${c}`])])
    mkdirSync(join(dir, d), { recursive: true });
  let seed = 0;
  for (const f of ["cat.jpg", "img.jpg", "new-photo.jpg", "a.png", "b.png", "item.png", "photos/p1.jpg", "photos/p2.png", "more/m1.png"])
    await image(join(dir, f), seed++);
  for (let c = 0; c < 5; c++)
    for (const split of ["train", "train", "val"]) await image(join(dir, `photos/${split}/c${c}/${seed}.png`), seed++, 40 + c * 4, 36);
  writeFileSync(join(dir, "classes.txt"), `${Array.from({ length: 10 }, (_, i) => `class ${i}`).join("\n")}\n`);
  const x = new Float32Array(3 * 32 * 32).map((_, i) => Math.sin(i));
  writeNpy(join(dir, "x.npy"), { dtype: "float32", shape: [1, 3, 32, 32], data: x });
  const vgg16 = initWeights(buildModel("vgg16", { widthDivisor: 16, inputSize: 32 }), "torchvision", 1);
  for (const f of ["vgg16.pth", "vgg16-397923af.pth", "vgg16-caffe.pth"]) writeSafetensors(join(dir, f), vgg16);
  // runs/a: README's Fashion-MNIST run, two steps of it.
  vggIn(
    dir,
    ["train", "--arch", "vgg11_bn", "--head", "compact", "--width-divisor", "16", "--data", "fashion-mnist"].concat([
      "--steps",
      "2",
      "--epochs",
      "1",
      "--val",
      "0",
      "--no-progress",
      "--out",
      "runs/a",
    ]),
  );
  return dir;
}

test("README's commands run as written (or are listed with the reason they are not)", {
  skip: !existsSync(FASHION_MNIST_DIR) && "needs dataset-fashion-mnist",
  timeout: 600_000,
}, async (t) => {
  const cmds = readmeCommands(readFileSync(join(ROOT, "README.md"), "utf8"));
  assert.ok(cmds.length >= 30, `only ${cmds.length} commands found: is the extraction broken?`);
  // An exemption no README command matches any more is stale.
  for (const [re] of NOT_RUN)
    assert.ok(
      cmds.some((c) => re.test(c)),
      `NOT_RUN entry ${re} matches no README command`,
    );
  const dir = await sandbox();
  const env = { ...process.env, VGG_HOME: join(dir, "home"), VGG_WEIGHTS_MIRROR: "http://127.0.0.1:9/" };
  let ran = 0;
  for (const cmd of cmds) {
    const skip = NOT_RUN.find(([re]) => re.test(cmd));
    if (skip) {
      t.diagnostic(`not run: ${cmd} (${skip[1]})`);
      continue;
    }
    if (/^npm /.test(cmd) || !/^vgg /.test(cmd)) assert.fail(`README command neither run nor listed in NOT_RUN: ${cmd}`);
    const run = standIn(cmd);
    // README: `npx vgg` in the package's directory; from the sandbox that is `npm exec` with the package as prefix.
    const vggFn = `vgg() { npm exec --prefix ${JSON.stringify(ROOT)} --no -- vgg "$@"; }`;
    const r = spawnSync("bash", ["-c", `${vggFn}; ${run}`], { cwd: dir, env, encoding: "utf8", timeout: 120_000 });
    assert.equal(r.status, 0, `${cmd}\n  ran as: ${run}\n  ${r.stderr}`);
    assert.doesNotMatch(r.stderr, /npm warn/i, cmd);
    ran++;
  }
  t.diagnostic(`${ran} of ${cmds.length} README commands ran`);
  assert.ok(ran >= 20, `only ${ran} commands ran`);
});

test("README says how to run `vgg` after npm ci (npx, or npm link for a bare vgg)", () => {
  const md = readFileSync(join(ROOT, "README.md"), "utf8");
  const top = md.slice(0, md.indexOf("## Library"));
  assert.match(top, /`npx vgg \.\.\.`/);
  assert.match(top, /`npm link`/);
});

test("readmeCommands joins continuation and synopsis lines and drops comments", () => {
  const md = "```sh\n# c\nvgg a --x 1 \\\n  --y 2   # note\nvgg b [--z]\n     [--w]\n\nnpm test\n```\n";
  assert.deepEqual(readmeCommands(md), ["vgg a --x 1 --y 2", "vgg b [--z] [--w]", "npm test"]);
});
