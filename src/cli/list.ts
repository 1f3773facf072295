import type { Command } from "commander";
import { ARCHS } from "../zoo/configs.js";
import { buildModel, macCount, paramCount } from "../zoo/model.js";
import { fmtInt, table } from "./table.js";

export function register(program: Command): void {
  program
    .command("list")
    .description(
      'every model of the zoo with its parameters and multiply-adds at 224x224 (GMACs: torchvision\'s "GFLOPS"; JSON key gflops)',
    )
    .option("--json", "print JSON")
    .action((o: { json?: boolean }) => {
      const rows = ARCHS.map((a) => {
        const m = buildModel(a.name);
        return { arch: a.name, paper: a.paper, params: paramCount(m), gflops: macCount(m) / 1e9 };
      });
      if (o.json) return console.log(JSON.stringify(rows));
      console.log(
        table(
          ["arch", "paper config", "params", "GMACs"],
          rows.map((r) => [r.arch, r.paper, fmtInt(r.params), r.gflops.toFixed(2)]),
        ),
      );
    });
}
