/** `pgbisync setup | teardown | run`: prepare the nodes and Kafka, run the sync, remove everything. */
import type { Command } from 'commander';
import { loadConfigFile } from '../../config/load.ts';
import { redactConfig, redactText } from '../../config/redact.ts';
import { Daemon } from '../../daemon/daemon.ts';
import { exitIfLingering, exitOnUnhandledRejection } from '../../daemon/last-resort.ts';
import { createLogger } from '../../observability/logger.ts';
import { Metrics } from '../../observability/metrics.ts';
import { interleaveSequences } from '../../operate/sequences.ts';
import { requireSyncSettings, setup, teardown } from '../../operate/setup.ts';
import { formatStatus, readStatus } from '../../operate/status.ts';
import { resolveTables, withNode } from '../../operate/sync-plan.ts';
import { classifyPgError } from '../../runtime/pg-errors.ts';
import { retryTransient } from '../../runtime/retry.ts';
import { takeEarlyHangups } from '../early-hangup.ts';
import { parseIntegerOption } from '../options.ts';

export const CONFIG_OPTION = ['-c, --config <file>', 'config file (YAML)', 'pgbisync.yaml'] as const;

/** Every line a command prints passes the redaction rule (../../config/redact.ts). */
const out = (line: string): void => {
  process.stdout.write(`${redactText(line)}\n`);
};

export function registerSyncCommands(program: Command): void {
  program
    .command('setup')
    .description('create the pgbisync schema, publications, origins, delete triggers and topics (idempotent)')
    .option(...CONFIG_OPTION)
    .option(
      '--interleave-sequences',
      'make serial/identity sequences of synced tables hand out node-specific values (node k of N: k, k+N, ...)',
    )
    .action(async (flags: { config: string; interleaveSequences?: boolean }) => {
      const config = loadConfigFile(flags.config);
      const report = await setup(config, out);
      if (flags.interleaveSequences === true) {
        for (const s of await interleaveSequences(config, report.tables)) {
          out(`${s.node}: sequence ${s.sequence} restarts at ${s.start}, increment ${s.increment}`);
        }
      }
      out(`setup done: ${report.tables.length} tables on ${report.nodes.length} nodes`);
    });

  program
    .command('teardown')
    .description('drop slots, publications, origins, triggers, the pgbisync schema and the topics')
    .option(...CONFIG_OPTION)
    .option('--keep-topics', 'leave the Kafka topics in place')
    .action(async (flags: { config: string; keepTopics?: boolean }) => {
      const config = loadConfigFile(flags.config);
      await teardown(config, { keepTopics: flags.keepTopics === true }, out);
      out('teardown done');
    });

  program
    .command('run')
    .description(
      'run the sync: a capture per node and an applier per direction, until SIGTERM/SIGINT; SIGHUP (or `pgbisync reload`) reads the config again',
    )
    .option(...CONFIG_OPTION)
    .option(
      '--duration <seconds>',
      'stop after this many seconds (for scripts and tests)',
      parseIntegerOption,
    )
    .option(
      '--http-port <port>',
      'port of /metrics, /healthz and /status (0: a free port; default from config)',
    )
    .action(async (flags: { config: string; duration?: number; httpPort?: string }) => {
      // SIGHUP reloads the config. Listened for first: its default action ends the process, and one may
      // come while run still waits for its nodes (an operator's reload after a restart, found by the
      // torture test); it is followed once the daemon exists.
      let daemon: Daemon | undefined;
      let reloadAsked = false;
      const onHangup = () => {
        if (daemon === undefined) reloadAsked = true;
        else void daemon.reload('SIGHUP');
      };
      process.on('SIGHUP', onHangup);
      // Those that came while the CLI loaded (bin/pgbisync.js counted them).
      if (takeEarlyHangups() > 0) reloadAsked = true;
      try {
        await runDaemon(flags, (d) => {
          daemon = d;
          if (reloadAsked) void d.reload('SIGHUP during the start-up');
        });
      } finally {
        process.off('SIGHUP', onHangup);
      }
    });

  program
    .command('status')
    .description(
      'per direction: retained WAL, Kafka lag, last applied LSN and time, conflicts; exit 1 if unhealthy',
    )
    .option(...CONFIG_OPTION)
    .option('--json', 'print JSON')
    .action(async (flags: { config: string; json?: boolean }) => {
      const config = loadConfigFile(flags.config);
      const report = await readStatus(config);
      out(flags.json === true ? JSON.stringify(report, null, 2) : formatStatus(report));
      if (!report.healthy) process.exitCode = 1;
    });
}

/** `run` itself, once SIGHUP is listened for: `onDaemon` gets the daemon as soon as it exists. */
async function runDaemon(
  flags: { config: string; duration?: number; httpPort?: string },
  onDaemon: (daemon: Daemon) => void,
): Promise<void> {
  const config = loadConfigFile(flags.config);
  const log = createLogger();
  exitOnUnhandledRejection(log);
  log.info({ config: redactConfig(config) }, 'starting');
  const controller = new AbortController();
  const stop = (why: string) => {
    if (controller.signal.aborted) return;
    log.info({ why }, 'stopping');
    controller.abort();
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  // Conflict resolution compares commit timestamps: refuse to run without them (and logical WAL). A
  // node that is down for the moment (restarting, failing over) is waited for, not a reason to exit.
  const tables = await retryTransient(
    async () => {
      try {
        for (const node of config.nodes)
          await withNode(node, 'run', (db) => requireSyncSettings(db, node.name));
        return await resolveTables(config);
      } catch (error) {
        // As the supervisor treats a component's unknown failure: transient unless classified otherwise.
        throw classifyPgError(error, 'checking the nodes before the start');
      }
    },
    {
      signal: controller.signal,
      onRetry: (err, delayMs) => log.warn({ err, delayMs }, 'waiting for the nodes to start'),
    },
  );
  const metrics = new Metrics();
  const daemon = new Daemon({
    configFile: flags.config,
    config,
    tables,
    httpPort: flags.httpPort === undefined ? config.http.port : Number(flags.httpPort),
    log,
    metrics,
    onListening: (url, instance) => log.info({ tables, http: url, instance }, 'running'),
  });
  onDaemon(daemon);
  const timer =
    flags.duration === undefined
      ? undefined
      : setTimeout(() => stop('duration elapsed'), flags.duration * 1000);
  try {
    await daemon.run(controller.signal);
  } finally {
    controller.abort();
    if (timer !== undefined) clearTimeout(timer);
    exitIfLingering(log);
  }
  log.info('stopped');
}
