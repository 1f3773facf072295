/**
 * Every flag that `vgg <command> --help` documents is run by at least one CLI test. A flag once crashed for every
 * value and no test noticed because no test ran it; this finds such flags from the help itself, so a new command or
 * flag is checked the day it lands.
 *
 * "Run by a test" is textual: a test file that runs the binary (imports vgg/vggAsync/BIN from ./helpers.js or
 * spawns bin/vgg.js) holds the flag as a string literal token ("--foo", '--foo', `--foo ..., "--foo=..."). A flag
 * counts once for every command that documents it: the shared groups (model, precision) are parsed by one function.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { pool, ROOT, vggAsync } from "./helpers.js";

/**
 * Flags no CI test can run, each with why. Keyed by "command --flag" (subcommands space-separated). Keep it short:
 * a flag belongs here only when running it at all needs hardware, network or hours the CI does not have.
 */
const EXEMPT: Record<string, string> = {};

const SELF = "cli-flags.test.ts";

/** The names of a help text's "Commands:" section (commander's `help` pseudo-command left out). */
function parseCommands(help: string): string[] {
  const section = /^Commands:\n((?: {2}.*\n?)*)/m.exec(help);
  if (!section) return [];
  // Entries sit at two spaces; wrapped description lines are indented further.
  const names = [...section[1].matchAll(/^ {2}([a-z][\w-]*)/gm)].map((m) => m[1]);
  return names.filter((n) => n !== "help");
}

/** The long flags of a help text's "Options:" section, without --help and --version. */
function parseFlags(help: string): string[] {
  const section = /^Options:\n((?: {2}.*\n?)*)/m.exec(help);
  if (!section) return [];
  // Only an entry's first flag token counts: descriptions mention other flags ("preprocessed with --preset").
  const flags = [...section[1].matchAll(/^ {2}(?:-[a-zA-Z], )?(--[a-z0-9][\w-]*)/gm)].map((m) => m[1]);
  return flags.filter((f) => f !== "--help" && f !== "--version");
}

interface TestSource {
  file: string;
  text: string;
}

/** The test files that run the real binary, read from the repo's test/ (sources, not dist: literals survive as written). */
function cliTestSources(dir = join(ROOT, "test")): TestSource[] {
  const out: TestSource[] = [];
  for (const file of readdirSync(dir).sort()) {
    if (!file.endsWith(".ts") || file === SELF) continue;
    const text = readFileSync(join(dir, file), "utf8");
    if (runsBinary(text)) out.push({ file, text });
  }
  return out;
}

function runsBinary(text: string): boolean {
  for (const m of text.matchAll(/import\s*\{([^}]*)\}\s*from\s*["']\.\/helpers\.js["']/g)) {
    const names = m[1].split(",").map((s) => s.trim().replace(/^type\s+/, ""));
    if (names.some((n) => n === "vgg" || n === "vggAsync" || n === "BIN")) return true;
  }
  return /bin\/vgg\.js|["']bin["']\s*,\s*["']vgg\.js["']/.test(text);
}

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\-]/g, "\\$&");

/** Whether `text` holds `flag` as a string literal token: a quote, the flag, then the quote, `=` or (in a template) a space. */
function hasFlagLiteral(text: string, flag: string): boolean {
  const f = escapeRe(flag);
  return new RegExp(`(["'])${f}(?:\\1|=)|\`${f}(?:\`|=|\\s)`).test(text);
}

/** The files that exercise `flag`. */
function exercisedBy(sources: TestSource[], flag: string): string[] {
  return sources.filter((s) => hasFlagLiteral(s.text, flag)).map((s) => s.file);
}

/** The documented flags no test runs ("vgg COMMAND --flag"), and the exemptions ("COMMAND --flag") a test now covers. */
function uncovered(
  commands: CommandFlags[],
  sources: TestSource[],
  exempt: Record<string, string>,
): { missing: string[]; stale: string[] } {
  const missing: string[] = [];
  const stale: string[] = [];
  for (const c of commands) {
    for (const flag of c.flags) {
      const key = `${c.path.join(" ")} ${flag}`;
      const covered = exercisedBy(sources, flag).length > 0;
      if (key in exempt) {
        if (covered) stale.push(key);
      } else if (!covered) missing.push(`vgg ${key}`);
    }
  }
  return { missing, stale };
}

interface CommandFlags {
  path: string[];
  flags: string[];
}

/** Every command reachable from `vgg --help` (subcommands through their own "Commands:" sections) with its flags. */
async function collectCommands(): Promise<CommandFlags[]> {
  const found: CommandFlags[] = [];
  let level: string[][] = [[]];
  while (level.length > 0) {
    const helps = await pool(
      level.map((path) => async () => {
        const r = await vggAsync([...path, "--help"], { timeout: 30_000 });
        assert.equal(r.status, 0, `vgg ${path.join(" ")} --help: ${r.stderr}`);
        return r.stdout;
      }),
      2,
    );
    const next: string[][] = [];
    level.forEach((path, k) => {
      if (path.length > 0) found.push({ path, flags: parseFlags(helps[k]) });
      for (const name of parseCommands(helps[k])) next.push([...path, name]);
    });
    level = next;
  }
  return found;
}

test("every flag the help documents is run by a CLI test", { timeout: 120_000 }, async () => {
  const commands = await collectCommands();
  const sources = cliTestSources();
  const names = commands.map((c) => c.path.join(" "));

  // The checker must see the CLI: the top-level commands, the nested bench ones, and their many flags.
  assert.ok(commands.length >= 10, `only ${commands.length} commands found: ${names.join(", ")}`);
  for (const c of ["list", "train", "eval", "export", "bench", "bench infer", "bench train", "serve-demo"]) assert.ok(names.includes(c), c);
  const total = commands.reduce((n, c) => n + c.flags.length, 0);
  assert.ok(total >= 150, `only ${total} flags found`);
  assert.ok(commands.find((c) => c.path.join(" ") === "train")?.flags.includes("--no-shuffle"), "negated flags are collected");
  assert.ok(sources.length >= 10, `only ${sources.length} test files run the binary`);

  // It must be able to say yes and no: a flag cli.test.ts runs is covered, a made-up one on a made-up command is
  // reported, and an exemption of a flag that a test runs is called stale.
  assert.ok(exercisedBy(sources, "--json").includes("cli.test.ts"), "vgg list --json is run in cli.test.ts");
  const probe = uncovered([...commands, { path: ["no-such-command"], flags: ["--no-such-flag-xyzzy", "--json"] }], sources, {
    "no-such-command --json": "a probe",
  });
  assert.ok(probe.missing.includes("vgg no-such-command --no-such-flag-xyzzy"), "a fabricated flag is reported");
  assert.ok(!probe.missing.includes("vgg no-such-command --json"));
  assert.deepEqual(probe.stale, ["no-such-command --json"]);

  const documented = new Set(commands.flatMap((c) => c.flags.map((f) => `${c.path.join(" ")} ${f}`)));
  for (const key of Object.keys(EXEMPT)) assert.ok(documented.has(key), `exemption '${key}' names no documented flag`);
  const { missing, stale } = uncovered(commands, sources, EXEMPT);
  assert.deepEqual(stale, [], "exempt flags that a test now runs: drop their exemptions");
  assert.equal(missing.length, 0, `documented flags no CLI test runs (${missing.length}):\n  ${missing.join("\n  ")}\n`);
});

test("the checker's parsers and matcher", () => {
  const help = [
    "Usage: vgg bench [options] [command]",
    "",
    "Options:",
    "  -V, --version    output the version number",
    "  --calibrate-random [n]  int8 with n random images, see",
    "                   --preset and --per-tensor",
    "  --no-shuffle     keep the data order",
    "  -h, --help       display help for command",
    "",
    "Commands:",
    "  infer [options]  inference images/s, long description",
    "                   wrapped onto a second line",
    "  train [options]  training images/s",
    "  help [command]   display help for command",
    "",
  ].join("\n");
  assert.deepEqual(parseCommands(help), ["infer", "train"]);
  assert.deepEqual(parseFlags(help), ["--calibrate-random", "--no-shuffle"]);
  assert.ok(hasFlagLiteral(`vgg(["train", "--momentum", "0"])`, "--momentum"));
  assert.ok(hasFlagLiteral(`const a = ['--momentum']`, "--momentum"));
  assert.ok(hasFlagLiteral('run(["--percentile=99"])', "--percentile"));
  assert.ok(hasFlagLiteral("run(`--scale ` + s)", "--scale"));
  // A longer flag sharing the prefix, or a mention inside prose, is not the flag.
  assert.ok(!hasFlagLiteral(`vgg(["--warmup-steps", "1"])`, "--warmup"));
  assert.ok(!hasFlagLiteral(`assert.match(err, /--warmup/)`, "--warmup"));
  assert.ok(!hasFlagLiteral(`"needs --warmup"`, "--warmup"));
});
