/**
 * What the applier refuses to take from a topic, before anything reaches SQL (docs/security.md): anyone
 * who can produce to a synced topic must not be able to write a table outside the config, pgbisync's own
 * tables (`pgbisync.apply_progress`, `pgbisync.tombstones`, ...) least of all, nor steer the grouping
 * with `pgbisync.*` headers a capture never writes. Each refused record goes to the dead-letter topic
 * with the reason (`pgbisync.dlq.error`, `pgbisync.dlq.code`) and is counted
 * (`pgbisync_dead_letters_total{code}`); its offset still counts, so the applier moves past it.
 *
 * Records that are not change events at all are refused by the decoder (./event-changes.ts, PGB3101).
 */
import type { InRecord } from '../kafka/records.ts';
import { forgedHeader, WIRE_HEADER, WIRE_VERSION, wireVersionOf } from '../kafka/wire-headers.ts';
import { BlockedError, ErrorCode, MalformedInputError, RetryableError } from '../runtime/errors.ts';
import type { DecodedChange } from './transaction-grouper.ts';
import { recordPosition } from './transaction-grouper.ts';

/** pgbisync's own schema: never written from a topic, whatever the config says. */
const OWN_SCHEMA = 'pgbisync';

const NO_HEADERS: ReadonlyMap<string, string> = new Map();

export class RecordGuard {
  readonly #tables: ReadonlySet<string>;
  readonly #direction: string;

  /** `tables`: the synced tables as `schema.table` (the resolved config). */
  constructor(o: { sourceNode: string; targetNode: string; tables: readonly string[] }) {
    this.#tables = new Set(o.tables);
    this.#direction = `${o.sourceNode} -> ${o.targetNode}`;
  }

  /**
   * `records` with each one whose headers are forged handed to `onRejected` and replaced by an inert
   * copy (no value, no headers) that only moves the position past it.
   */
  screen(
    records: readonly InRecord[],
    onRejected: (record: InRecord, error: MalformedInputError) => void,
  ): readonly InRecord[] {
    let out: InRecord[] | undefined;
    records.forEach((record, i) => {
      const reason = forgedHeader(record.headers);
      if (reason === undefined) return;
      onRejected(
        record,
        new MalformedInputError(`record ${recordPosition(record)}: ${reason}`, {
          code: ErrorCode.EVENT_FORGED_HEADER,
          hint: `only pgbisync's capture of the source may produce to this topic (${this.#direction}); see docs/security.md`,
        }),
      );
      out ??= [...records];
      out[i] = { ...record, value: null, headers: NO_HEADERS };
    });
    return out ?? records;
  }

  /** `decoded`, when its table is synced; throws MalformedInputError (dead-lettered) otherwise. */
  admit(decoded: DecodedChange, record: InRecord): DecodedChange {
    const { schema, table } = decoded.change;
    const name = `${schema}.${table}`;
    if (schema === OWN_SCHEMA) {
      throw new MalformedInputError(
        `record ${recordPosition(record)} names pgbisync's own table ${name}, which is never written from a topic`,
        {
          code: ErrorCode.EVENT_FOREIGN_TABLE,
          hint: `only pgbisync's capture of the source may produce to this topic (${this.#direction}); see docs/security.md`,
        },
      );
    }
    if (!this.#tables.has(name)) {
      throw new UnsyncedTableError(
        name,
        `record ${recordPosition(record)} names table ${name}, which is not synced`,
        {
          code: ErrorCode.EVENT_FOREIGN_TABLE,
          hint: `add ${name} to tables (on every node and instance) if it should be synced; otherwise the record did not come from pgbisync's capture (${this.#direction})`,
        },
      );
    }
    return decoded;
  }
}

/** A change of a table the applier does not sync (dead-lettered, unless it is a partition made since). */
export class UnsyncedTableError extends MalformedInputError {
  readonly table: string;
  constructor(table: string, message: string, options: ConstructorParameters<typeof MalformedInputError>[1]) {
    super(message, options);
    this.table = table;
  }
}

/**
 * A change of a partition made since the applier started, of a synced partitioned table (its changes
 * are its partitions'): not dead-lettered but read again, by an applier that knows it (the guard's
 * tables are the partitions of its start). Nothing of the batch was written yet.
 */
export async function requireNoNewPartition(
  malformed: readonly { error: unknown }[],
  tablesNow: () => Promise<readonly string[]>,
): Promise<void> {
  const unsynced = new Set(
    malformed.flatMap((m) => (m.error instanceof UnsyncedTableError ? [m.error.table] : [])),
  );
  if (unsynced.size === 0) return;
  const now = new Set(await tablesNow());
  const made = [...unsynced].filter((t) => now.has(t));
  if (made.length > 0)
    throw new RetryableError(
      `${made.join(', ')}: partition of a synced table made since the applier started; reading again with it`,
      {
        code: ErrorCode.EVENT_FOREIGN_TABLE,
      },
    );
}

/**
 * Throws a BlockedError at the first record of a wire version this applier does not know: read by the
 * rules of an older version it could be applied wrongly, or set aside as malformed when it is not.
 */
export function checkWireVersion(records: readonly InRecord[], sourceNode: string, targetNode: string): void {
  for (const record of records) {
    if (wireVersionOf(record.headers) <= WIRE_VERSION) continue; // NaN (unreadable) is not
    throw new BlockedError(
      `applying ${sourceNode} -> ${targetNode}: record ${recordPosition(record)} has wire version '${record.headers.get(WIRE_HEADER)}' (header ${WIRE_HEADER}); this pgbisync reads versions up to ${WIRE_VERSION}`,
      {
        code: ErrorCode.WIRE_VERSION_UNSUPPORTED,
        hint: `run a pgbisync for this direction at least as new as the one capturing ${sourceNode}; the direction resumes from the same record`,
      },
    );
  }
}
