/** `pgbisync resync <node>`: re-copy a node's tables to the others (the fix for a lost slot, PGB2005). */
import type { Command } from 'commander';
import { loadConfigFile } from '../../config/load.ts';
import { redactText } from '../../config/redact.ts';
import { resync } from '../../operate/resync.ts';
import { parseIntegerOption } from '../options.ts';
import { CONFIG_OPTION } from './sync.ts';

const DEFAULT_TIMEOUT_S = 300;

export function registerResyncCommand(program: Command): void {
  program
    .command('resync')
    .description(
      "re-copy a node's rows and remembered deletes to the other nodes under the conflict policy (after its slot was lost), while the sync runs; waits until they are applied",
    )
    .argument('<node>', 'the node whose tables are copied (its name in the config)')
    .option(...CONFIG_OPTION)
    .option('--no-wait', 'only ask for the copy; `pgbisync run` makes it at its next start')
    .option(
      '--timeout <seconds>',
      'give up (exit 1) after this long without progress; the request stands',
      parseIntegerOption,
      DEFAULT_TIMEOUT_S,
    )
    .action(async (node: string, flags: { config: string; wait: boolean; timeout: number }) => {
      const config = loadConfigFile(flags.config);
      await resync(config, node, {
        wait: flags.wait,
        stallTimeoutMs: flags.timeout * 1000,
        onProgress: (line) => process.stdout.write(`${redactText(line)}\n`),
      });
    });
}
