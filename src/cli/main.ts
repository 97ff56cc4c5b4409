/**
 * pgbisync command line: thin layer that parses arguments and calls into the library.
 * Each command lives in ./commands/<name>.ts and registers itself on the program.
 */
import { Command } from 'commander';
import { registerDdlCommand } from './commands/ddl.ts';
import { registerDevCommand } from './commands/dev.ts';
import { registerOperateCommands } from './commands/operate.ts';
import { registerReloadCommand } from './commands/reload.ts';
import { registerResyncCommand } from './commands/resync.ts';
import { registerSyncCommands } from './commands/sync.ts';
import { registerTailCommand } from './commands/tail.ts';
import { reportFatal } from './report-fatal.ts';

export function buildProgram(): Command {
  const program = new Command('pgbisync')
    .description('Real-time bidirectional PostgreSQL synchronization through Apache Kafka')
    .version('0.1.0')
    .showHelpAfterError();
  registerDevCommand(program);
  registerSyncCommands(program);
  registerOperateCommands(program);
  registerResyncCommand(program);
  registerReloadCommand(program);
  registerDdlCommand(program);
  registerTailCommand(program);
  return program;
}

export async function main(argv: readonly string[]): Promise<void> {
  try {
    await buildProgram().parseAsync([...argv]);
  } catch (error) {
    process.exitCode = reportFatal(error);
  }
}
