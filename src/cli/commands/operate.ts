/** `pgbisync doctor | verify`: check the prerequisites; compare (and repair) the synced tables. */
import type { Command } from 'commander';
import { loadConfigFile } from '../../config/load.ts';
import { redactText } from '../../config/redact.ts';
import { formatDoctor, runDoctor } from '../../operate/doctor.ts';
import { DEFAULT_CHUNK_ROWS, formatVerify, type VerifyProgress, verify } from '../../operate/verify.ts';
import { type PairRepair, repair } from '../../operate/verify-repair.ts';
import { parseIntegerOption } from '../options.ts';
import { CONFIG_OPTION } from './sync.ts';

const out = (line: string): void => {
  process.stdout.write(`${redactText(line)}\n`);
};

export function registerOperateCommands(program: Command): void {
  program
    .command('doctor')
    .description('check every prerequisite on every node and in Kafka, with the fix for each failure')
    .option(...CONFIG_OPTION)
    .option('--json', 'print JSON: {ok, checks: [{node, check, status, detail, fix}]}')
    .action(async (flags: { config: string; json?: boolean }) => {
      const config = loadConfigFile(flags.config);
      const report = await runDoctor(config);
      out(flags.json === true ? JSON.stringify(report, null, 2) : formatDoctor(report));
      if (!report.ok) process.exitCode = 1;
    });

  program
    .command('verify')
    .description(
      'compare every synced table across nodes by chunked hashes and list differing keys; exit 1 if any differ',
    )
    .option(...CONFIG_OPTION)
    .option('--json', 'print JSON')
    .option('--repair', 'copy the winning version of each differing row to the other node, then verify again')
    .option('--chunk-rows <n>', 'rows per hashed chunk', parseIntegerOption, DEFAULT_CHUNK_ROWS)
    .option('--max-keys <n>', 'differing keys listed per table and node', parseIntegerOption, 50)
    .option('--progress', 'report progress on stderr even when it is not a terminal')
    .action(
      async (flags: {
        config: string;
        json?: boolean;
        repair?: boolean;
        chunkRows: number;
        maxKeys: number;
        progress?: boolean;
      }) => {
        const config = loadConfigFile(flags.config);
        const options = {
          chunkRows: flags.chunkRows,
          maxListedKeys: flags.maxKeys,
          ...progressReporter(flags.progress === true),
        };
        const before = await verify(config, options);
        if (flags.repair !== true || before.differences.length === 0) {
          out(flags.json === true ? JSON.stringify(before.report, null, 2) : formatVerify(before.report));
          if (!before.report.identical) process.exitCode = 1;
          return;
        }
        const repairs = await repair(config, before.differences);
        const after = await verify(config, {
          ...options,
          tables: [...new Set(before.report.tables.filter((t) => !t.identical).map((t) => t.table))],
        });
        if (flags.json === true) {
          out(
            JSON.stringify(
              { identical: after.report.identical, before: before.report, repairs, after: after.report },
              null,
              2,
            ),
          );
        } else {
          out(formatVerify(before.report));
          for (const r of repairs) out(formatRepair(r));
          out('after repair:');
          out(formatVerify(after.report));
        }
        if (!after.report.identical) process.exitCode = 1;
      },
    );
}

function formatRepair(r: PairRepair): string {
  const parts = [
    `${r.copiedToNode} copied to ${r.node}`,
    `${r.copiedToReference} copied to ${r.reference}`,
    `${r.deletedOnNode} deleted on ${r.node}`,
    `${r.deletedOnReference} deleted on ${r.reference}`,
  ];
  if (r.unresolved > 0) parts.push(`${r.unresolved} unresolved (equal versions)`);
  return `repair ${r.table} ${r.reference} vs ${r.node}: ${parts.join(', ')}`;
}

/** Progress on stderr: rewritten in place on a terminal, a line per second otherwise (with --progress). */
function progressReporter(forced: boolean): { onProgress?: (p: VerifyProgress) => void } {
  const tty = process.stderr.isTTY === true;
  if (!tty && !forced) return {};
  let lastLineMs = 0;
  return {
    onProgress: (p) => {
      const line = `verify ${p.table}: ${p.referenceRows} rows, ${p.chunks} chunk(s)${p.done ? ', done' : ''}`;
      if (tty) {
        process.stderr.write(`\r\u001b[2K${line}${p.done ? '\n' : ''}`);
      } else if (p.done || Date.now() - lastLineMs >= 1000) {
        lastLineMs = Date.now();
        process.stderr.write(`${line}\n`);
      }
    },
  };
}
