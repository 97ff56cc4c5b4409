/** `pgbisync tail <node>`: print the decoded change events of a node's topics. */
import type { Command } from 'commander';
import { loadConfigFile } from '../../config/load.ts';
import { resolveTables } from '../../operate/sync-plan.ts';
import { formatTailEvent, tail } from '../../operate/tail.ts';
import { describeError, ErrorCode, FatalError } from '../../runtime/errors.ts';
import { parseIntegerOption } from '../options.ts';
import { CONFIG_OPTION } from './sync.ts';

export function registerTailCommand(program: Command): void {
  program
    .command('tail')
    .description(
      "print the change events on a node's topics: op, table, key, changed columns, source LSN, commit time",
    )
    .argument('<node>', 'the node whose captured events to show')
    .option(...CONFIG_OPTION)
    .option('--table <table>', "only this table's events (schema.table; schema public if omitted)")
    .option('--from <where>', 'beginning: every retained event; end: only new ones', 'end')
    .option('--max <n>', 'stop after n events', parseIntegerOption)
    .option('--json', 'one JSON object per event')
    .action(
      async (
        node: string,
        flags: { config: string; table?: string; from: string; max?: number; json?: boolean },
      ) => {
        if (flags.from !== 'beginning' && flags.from !== 'end') {
          throw new FatalError(`--from must be beginning or end, not '${flags.from}'`, {
            code: ErrorCode.CONFIG_INVALID,
          });
        }
        const config = loadConfigFile(flags.config);
        const tables = await resolveTables(config);
        const controller = new AbortController();
        const stop = () => controller.abort();
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
        const result = await tail(config, tables, {
          node,
          ...(flags.table === undefined ? {} : { table: flags.table }),
          from: flags.from,
          ...(flags.max === undefined ? {} : { max: flags.max }),
          signal: controller.signal,
          onEvent: (event) =>
            process.stdout.write(`${flags.json === true ? JSON.stringify(event) : formatTailEvent(event)}\n`),
          onMalformed: (where, error) =>
            process.stderr.write(`pgbisync tail: ${where} is not a change event: ${describeError(error)}\n`),
        });
        process.removeListener('SIGINT', stop);
        process.removeListener('SIGTERM', stop);
        if (result.malformed > 0) process.exitCode = 1;
      },
    );
}
