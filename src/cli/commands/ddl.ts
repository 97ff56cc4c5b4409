/** `pgbisync ddl "<statement>"`: one schema change on every node, in an order that blocks no direction. */
import type { Command } from 'commander';
import { loadConfigFile } from '../../config/load.ts';
import { applyDdl } from '../../operate/ddl.ts';
import { CONFIG_OPTION } from './sync.ts';

export function registerDdlCommand(program: Command): void {
  program
    .command('ddl')
    .description(
      'apply one schema change (ALTER TABLE ... ADD COLUMN, CREATE INDEX, ...) on every node: run on all, then committed on all, recorded in pgbisync.ddl_log; refuses what would lose or block changes, with the reason',
    )
    .argument('<statement>', 'one SQL statement')
    .option(...CONFIG_OPTION)
    .option(
      '--force',
      'apply a change of shape (a dropped column, a new type or key) once nothing is in flight',
    )
    .action(async (statement: string, flags: { config: string; force?: boolean }) => {
      const config = loadConfigFile(flags.config);
      const result = await applyDdl(config, statement, {
        force: flags.force === true,
        onProgress: (line) => process.stdout.write(`${line}\n`),
      });
      process.stdout.write(
        `ddl: done on ${result.nodes.join(', ')}${result.tables.length > 0 ? ` (synced tables: ${result.tables.join(', ')})` : ''}\n`,
      );
    });
}
