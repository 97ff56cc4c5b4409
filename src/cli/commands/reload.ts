/**
 * `pgbisync reload`: has the running `pgbisync run` read its config file again (as SIGHUP does), through
 * its HTTP endpoint POST /reload; prints what changed. Exit 1 when no daemon answers or it refused the
 * new config (it then runs on with the one it had).
 */
import type { Command } from 'commander';
import { loadConfigFile } from '../../config/load.ts';
import { redactText } from '../../config/redact.ts';
import type { ReloadOutcome } from '../../daemon/http-server.ts';
import { ErrorCode, FatalError } from '../../runtime/errors.ts';
import { CONFIG_OPTION } from './sync.ts';

const out = (line: string): void => {
  process.stdout.write(`${redactText(line)}\n`);
};

export function registerReloadCommand(program: Command): void {
  program
    .command('reload')
    .description(
      'have the running `pgbisync run` read its config file again (as SIGHUP does): tables added are set up and copied while it runs, tables removed stop syncing; a config that does not load is refused and the sync runs on unchanged',
    )
    .option(...CONFIG_OPTION)
    .option(
      '--url <url>',
      "the daemon's HTTP address (default http://<http.host>:<http.port> of the config; its 'running' log line names it)",
    )
    .action(async (flags: { config: string; url?: string }) => {
      const url = flags.url ?? daemonUrl(flags.config);
      let res: Response;
      try {
        res = await fetch(`${url.replace(/\/$/, '')}/reload`, {
          method: 'POST',
          signal: AbortSignal.timeout(600_000),
        });
      } catch (error) {
        throw new FatalError(`reload: no pgbisync run answers at ${url}`, {
          code: ErrorCode.RELOAD_FAILED,
          hint: 'is `pgbisync run` running? pass its HTTP address with --url (or send it SIGHUP)',
          cause: error,
        });
      }
      if (res.status !== 200 && res.status !== 409) {
        throw new FatalError(`reload: ${url}/reload answered ${res.status}: ${await res.text()}`, {
          code: ErrorCode.RELOAD_FAILED,
          hint: 'is the address the one of `pgbisync run` (its /status answers)? look at its log',
        });
      }
      const outcome = (await res.json()) as ReloadOutcome;
      if (!outcome.reloaded) {
        throw new FatalError(`reload refused, the sync runs on unchanged: ${outcome.error}`, {
          code: ErrorCode.RELOAD_FAILED,
          hint: outcome.fix ?? 'fix the config, then reload again',
        });
      }
      const list = (names: readonly string[]) => (names.length === 0 ? 'none' : names.join(', '));
      out(
        `reloaded: ${outcome.tables.length} tables; added: ${list(outcome.added)}; removed: ${list(outcome.removed)}`,
      );
      if (outcome.added.length > 0)
        out("the captures copy the added tables now (progress in `pgbisync run`'s /status and log)");
    });
}

/** The daemon's address from the config's http section. */
function daemonUrl(configFile: string): string {
  const { http } = loadConfigFile(configFile);
  if (http.port === 0) {
    throw new FatalError('reload: http.port is 0 in the config (the daemon picked a free port)', {
      code: ErrorCode.RELOAD_FAILED,
      hint: "pass --url with the address its 'running' log line names, or send it SIGHUP",
    });
  }
  const host = http.host === '0.0.0.0' || http.host === '::' ? '127.0.0.1' : http.host;
  return `http://${host.includes(':') ? `[${host}]` : host}:${http.port}`;
}
