/**
 * Where ONNX Runtime runs in Node: the CPU, or the GPU through the WebGPU execution provider that onnxruntime-node
 * bundles (Dawn over Vulkan on Linux; it needs a Vulkan driver, and nothing to download). Its CUDA provider is
 * fetched at install time from a feed many machines cannot reach, so WebGPU is the GPU path that `npm ci` installs.
 * `auto` is WebGPU when an adapter exists, else the CPU.
 */
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { shown, VggError } from "../errors.js";
import type { Device } from "./session.js";

export type { Device };

export const DEVICES = ["cpu", "webgpu", "auto"] as const;
export type DeviceChoice = (typeof DEVICES)[number];
/** The device when none is named: the CPU, which every machine has. */
export const DEFAULT_DEVICE: DeviceChoice = "cpu";

export type WebGpuStatus = { available: true } | { available: false; reason: string };

let probed: Promise<WebGpuStatus> | undefined;

/**
 * Whether ORT's WebGPU provider finds an adapter and runs a node on it, asked once per process. The probe runs in a
 * child process (webgpu-probe.ts): Dawn prints its warnings to the process's stderr, which is the user's terminal.
 */
export function webGpuStatus(): Promise<WebGpuStatus> {
  probed ??= new Promise((done) => {
    const probe = fileURLToPath(new URL("./webgpu-probe.js", import.meta.url));
    execFile(process.execPath, [probe], { timeout: 120_000, encoding: "utf8" }, (err, stdout, stderr) => {
      let r: { ok?: boolean; error?: string } = {};
      try {
        r = JSON.parse(stdout.trim().split("\n").pop() ?? "");
      } catch {
        // No JSON: the probe crashed or timed out; `err` and its stderr say how.
      }
      if (r.ok === true) return done({ available: true });
      const why = r.error ?? (err?.killed ? "the adapter probe timed out" : `the adapter probe failed (${err?.message ?? "no answer"})`);
      done({ available: false, reason: adapterReason(why, stderr) });
    });
  });
  return probed;
}

/**
 * ORT's message cut to what it says ("Failed to get a WebGPU adapter: No supported adapters" is left as "No supported
 * adapters"), with Dawn's warnings from stderr ("Couldn't load Vulkan: libvulkan.so.1: cannot open ...").
 */
export function adapterReason(ortMessage: string, stderr: string): string {
  const first = ortMessage.split("\n")[0];
  const ort = (/ was false\. (.*)$/.exec(first)?.[1] ?? first).replace(/^Failed to get a WebGPU adapter: /, "").trim();
  const dawn = [...new Set([...stderr.matchAll(/^(?:Warning|Error): (.+)$/gm)].map((m) => m[1].trim()))].slice(0, 2);
  return shown([ort, ...dawn].filter((s) => s !== "").join("; "), 400);
}

/** The one line for a machine without an adapter. */
export function noAdapterMessage(reason: string): string {
  return `no WebGPU adapter: ${reason} (Vulkan driver?)`;
}

/**
 * The device a choice runs on: "cpu" as it is; "webgpu" if an adapter exists (else a VggError, one line); "auto" the
 * GPU when an adapter exists, else the CPU, with `note` told why.
 */
export async function resolveDevice(choice: DeviceChoice = DEFAULT_DEVICE, note?: (line: string) => void): Promise<Device> {
  if (choice === "cpu") return "cpu";
  if (!(DEVICES as readonly string[]).includes(choice))
    throw new VggError(`unknown device '${shown(String(choice))}' (known: ${DEVICES.join(", ")})`);
  const s = await webGpuStatus();
  if (s.available) return "webgpu";
  if (choice === "webgpu") throw new VggError(noAdapterMessage(s.reason));
  note?.(`${noAdapterMessage(s.reason)}; device auto: running on the CPU`);
  return "cpu";
}
