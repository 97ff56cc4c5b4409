/**
 * `pgbisync resync <node>`: re-copy a node's tables to the others (the fix for a lost slot, PGB2005).
 * `pgbisync resync <schema.table> [--from <node>]`: re-copy one table online, then verify it.
 */
import type { Command } from 'commander';
import { loadConfigFile } from '../../config/load.ts';
import { redactText } from '../../config/redact.ts';
import { resync } from '../../operate/resync.ts';
import { resyncTable } from '../../operate/resync-table.ts';
import { ErrorCode, FatalError } from '../../runtime/errors.ts';
import { parseIntegerOption } from '../options.ts';
import { CONFIG_OPTION } from './sync.ts';

const DEFAULT_TIMEOUT_S = 300;

export function registerResyncCommand(program: Command): void {
  program
    .command('resync')
    .description(
      "re-copy a node's rows and remembered deletes to the other nodes under the conflict policy (after its slot was lost), or one table (from every node, or --from one), while the sync runs; waits until they are applied (a table: then verifies it)",
    )
    .argument(
      '<node-or-table>',
      'a node whose tables are copied (its name in the config), or a synced table (schema.table)',
    )
    .option(...CONFIG_OPTION)
    .option('--from <node>', 'with a table: copy it from this node only (default: from every node)')
    .option('--no-wait', 'only ask for the copy; `pgbisync run` makes it at its next start')
    .option(
      '--pause',
      'with a table: pause its pending copy where it is (the sync streams on); `pgbisync resync <table>` resumes it there',
    )
    .option(
      '--new-slot',
      'with a node: drop its replication slot first, so the copy starts from a new one (the fix for a slot PostgreSQL cannot decode, PGB2006)',
    )
    .option(
      '--timeout <seconds>',
      'give up (exit 1) after this long without progress; the request stands',
      parseIntegerOption,
      DEFAULT_TIMEOUT_S,
    )
    .action(
      async (
        target: string,
        flags: {
          config: string;
          wait: boolean;
          timeout: number;
          from?: string;
          newSlot?: boolean;
          pause?: boolean;
        },
      ) => {
        const config = loadConfigFile(flags.config);
        const options = {
          wait: flags.wait,
          stallTimeoutMs: flags.timeout * 1000,
          onProgress: (line: string) => process.stdout.write(`${redactText(line)}\n`),
        };
        if (config.nodes.some((n) => n.name === target)) {
          if (flags.pause === true) {
            throw new FatalError(`resync ${target}: --pause goes with a table, not a node`, {
              code: ErrorCode.CONFIG_INVALID,
              hint: "a node's copy is made whole; pause one table's: `pgbisync resync <schema.table> --pause`",
            });
          }
          if (flags.from !== undefined) {
            throw new FatalError(`resync ${target}: --from goes with a table, not a node`, {
              code: ErrorCode.CONFIG_INVALID,
              hint: `\`pgbisync resync ${target}\` re-copies every table of ${target}; \`pgbisync resync <schema.table> --from ${flags.from}\` one table`,
            });
          }
          await resync(config, target, { ...options, newSlot: flags.newSlot === true });
          return;
        }
        if (flags.newSlot === true) {
          throw new FatalError(`resync ${target}: --new-slot goes with a node, not a table`, {
            code: ErrorCode.CONFIG_INVALID,
            hint: 'a slot belongs to a node: `pgbisync resync <node> --new-slot`',
          });
        }
        const result = await resyncTable(config, target, {
          ...options,
          ...(flags.from === undefined ? {} : { from: flags.from }),
          ...(flags.pause === true ? { pause: true } : {}),
        });
        if (result.verified !== undefined && !result.verified.identical) process.exitCode = 1;
      },
    );
}
