/**
 * `vgg predict` over a folder of many images: images per second, peak RSS, RSS over the run (flat means the files
 * stream through a bounded queue) and CPU use (cores busy). The images are generated JPEGs of mixed sizes.
 *
 *   node dist/bench/predict-load.js [--images 1000] [--arch vgg11] [--batch-size 8] [--out bench/results/predict-load-<time>.md]
 */
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import sharp from "sharp";
import { keyedRng } from "../src/random.js";

/** Linux's USER_HZ: /proc/PID/stat's CPU times are in these ticks on every mainstream kernel configuration. */
const USER_HZ = 100;
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const arg = (name: string, def: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : def;
};
const n = Number(arg("images", "1000"));
const arch = arg("arch", "vgg11");
const batch = arg("batch-size", "8");

const dir = mkdtempSync(join(tmpdir(), "vgg-predict-load-"));
try {
  const r = keyedRng(1, 1);
  for (let i = 0; i < n; i++) {
    const [w, h] = [320 + r.int(320), 240 + r.int(240)];
    const px = Buffer.alloc(w * h * 3);
    for (let k = 0; k < px.length; k += 997) px[k] = r.int(256);
    await sharp(px, { raw: { width: w, height: h, channels: 3 } })
      .blur(3)
      .jpeg({ quality: 85 })
      .toFile(join(dir, `img${String(i).padStart(5, "0")}.jpg`));
  }
  const t0 = performance.now();
  const child = spawn(process.execPath, [join(ROOT, "bin", "vgg.js"), "predict", "--arch", arch, "--batch-size", batch, "--json", dir], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout.setEncoding("utf8").on("data", (s: string) => (out += s));
  child.stderr.setEncoding("utf8").on("data", (s: string) => (err += s));
  const samples: { t: number; rssMB: number; cpuS: number }[] = [];
  const timer = setInterval(() => {
    try {
      const status = readFileSync(`/proc/${child.pid}/status`, "utf8");
      const stat = readFileSync(`/proc/${child.pid}/stat`, "utf8").split(") ")[1].split(" ");
      const rss = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
      samples.push({ t: (performance.now() - t0) / 1000, rssMB: rss, cpuS: (Number(stat[11]) + Number(stat[12])) / USER_HZ });
    } catch {}
  }, 250);
  const code = await new Promise<number | null>((done) => child.on("close", done));
  clearInterval(timer);
  const wall = (performance.now() - t0) / 1000;
  if (code !== 0) throw new Error(`vgg predict failed: ${err}`);
  const results = JSON.parse(out) as unknown[];
  const peak = Math.max(...samples.map((s) => s.rssMB));
  const at = (f: number) => samples[Math.min(samples.length - 1, Math.floor(f * samples.length))];
  const cpu = samples[samples.length - 1].cpuS;
  const md = [
    `# vgg predict over ${n} images (${new Date().toISOString().slice(0, 16)})`,
    "",
    `\`node dist/bench/predict-load.js --images ${n} --arch ${arch} --batch-size ${batch}\`: generated JPEGs of 320-640 x 240-480, random ${arch} weights, ${cpus().length} cores.`,
    "",
    "| images | wall | images/s | peak RSS | RSS at 25% / 50% / 75% / 100% of the run | CPU busy (cores) |",
    "|---:|---:|---:|---:|---|---:|",
    `| ${results.length} | ${wall.toFixed(1)} s | ${(results.length / wall).toFixed(2)} | ${peak.toFixed(0)} MB | ${[0.25, 0.5, 0.75, 0.999].map((f) => at(f).rssMB.toFixed(0)).join(" / ")} MB | ${(cpu / samples[samples.length - 1].t).toFixed(2)} |`,
    "",
  ].join("\n");
  console.log(md);
  const out2 = arg("out", join(ROOT, "bench", "results", `predict-load-${new Date().toISOString().slice(0, 16).replace(":", "")}.md`));
  mkdirSync(dirname(out2), { recursive: true });
  writeFileSync(out2, md);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
