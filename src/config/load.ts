/**
 * Loads the YAML config: ${ENV} substitution for secrets, schema validation, cross-field rules. Every
 * error names the field path (`nodes[1].url: must be a postgres:// URL`) and is one line.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { checkPolicySettings } from '../conflicts/policy.ts';
import { ErrorCode, FatalError } from '../runtime/errors.ts';
import { registerSecrets } from './redact.ts';
import { type Config, configSchema } from './schema.ts';

export function loadConfigFile(path: string, env: NodeJS.ProcessEnv = process.env): Config {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new FatalError(`cannot read config file ${path}`, {
      code: ErrorCode.CONFIG_INVALID,
      hint: 'pass --config <file> (see README: configuration)',
      cause: error,
    });
  }
  return parseConfig(text, path, env);
}

export function parseConfig(text: string, source: string, env: NodeJS.ProcessEnv = process.env): Config {
  let raw: unknown;
  try {
    raw = parseYaml(substituteEnv(text, source, env));
  } catch (error) {
    if (error instanceof FatalError) throw error;
    throw new FatalError(`${source}: not valid YAML`, {
      code: ErrorCode.CONFIG_INVALID,
      cause: error,
    });
  }
  const result = configSchema.safeParse(raw);
  if (!result.success) throw configError(source, result.error);
  // From here on, every log line, fatal error and status output of this process masks its secrets.
  registerSecrets(result.data);
  return normalize(result.data, source);
}

/** Replaces ${NAME} with the environment variable; a missing one is an error naming it. */
function substituteEnv(text: string, source: string, env: NodeJS.ProcessEnv): string {
  return text.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_match, name: string) => {
    const value = env[name];
    if (value === undefined) {
      throw new FatalError(`${source}: environment variable ${name} is referenced but not set`, {
        code: ErrorCode.CONFIG_INVALID,
        hint: `export ${name}=...`,
      });
    }
    return value;
  });
}

export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out.length === 0 ? String(part) : `.${String(part)}`;
  }
  return out.length === 0 ? '(root)' : out;
}

function configError(source: string, error: z.ZodError): FatalError {
  const issue = error.issues[0];
  const path = issue === undefined ? '(root)' : formatPath(issue.path);
  let message = issue?.message ?? 'invalid';
  if (issue?.code === 'unrecognized_keys')
    message = `unknown field ${issue.keys.map((k) => `'${k}'`).join(', ')}`;
  // The other problems go in the hint, one line each; zod's own message (every issue as JSON) would only
  // repeat them, so it is not attached as a cause.
  const others = error.issues.slice(1).map((i) => `also ${formatPath(i.path)}: ${i.message}`);
  return new FatalError(`${source}: ${path}: ${message}`, {
    code: ErrorCode.CONFIG_INVALID,
    ...(others.length > 0 ? { hint: others.join('\n') } : {}),
  });
}

function fail(source: string, path: string, message: string): never {
  throw new FatalError(`${source}: ${path}: ${message}`, { code: ErrorCode.CONFIG_INVALID });
}

/** Cross-field rules the schema cannot express. */
function normalize(config: Config, source: string): Config {
  const names = new Set<string>();
  config.nodes.forEach((node, i) => {
    if (names.has(node.name)) fail(source, `nodes[${i}].name`, `duplicate node name '${node.name}'`);
    names.add(node.name);
  });
  if (config.nodes.every((node) => node.debezium !== undefined)) {
    fail(source, 'nodes', 'every node is captured by Debezium: at least one must receive changes');
  }
  const conflicts = checkPolicySettings(config.conflicts, names);
  if (conflicts !== undefined) fail(source, conflicts.path, conflicts.message);
  if (config.mode === 'per-table' && config.capture.snapshotRecords === 'batched') {
    fail(
      source,
      'capture.snapshotRecords',
      "batched needs mode: transactional (per-table topics are read as Debezium's); use events, or leave it unset",
    );
  }
  return config;
}
