/**
 * The applier's side of schemaless events (`capture.schemasEnabled: false`): the schemas their
 * `pgbisync.schema` headers name, read once per id (src/events/schema-store.ts) and kept for the decoder.
 * Looked up in the target's pgbisync.event_schemas first, then in the source's; what the source gave is
 * copied to the target, so an applier restarted while its source is down still reads its backlog.
 */
import { copyEventSchemas, readEventSchemas } from '../events/schema-store.ts';
import type { InRecord } from '../kafka/records.ts';
import { SCHEMA_HEADER } from '../kafka/wire-headers.ts';
import { BlockedError, ErrorCode, MalformedInputError } from '../runtime/errors.ts';
import { recordPosition } from './transaction-grouper.ts';

export interface EventSchemasOptions {
  readonly sourceNode: string;
  /** Where capture stored them. Unset: no source to read from. */
  readonly sourceUrl?: string | undefined;
  /** The applier's target: its copy is read first and receives what the source gave. */
  readonly targetNode?: string;
  readonly targetUrl?: string;
}

export class EventSchemas {
  readonly #o: EventSchemasOptions;
  readonly #known = new Map<string, string>();

  constructor(options: EventSchemasOptions) {
    this.#o = options;
  }

  /**
   * Reads the schemas `records` name that are not known yet (nothing when all are known). Throws
   * BlockedError when a named schema is on neither node: the stream stops there instead of setting the
   * change aside, since the schema may come back (see the hint).
   */
  async load(records: readonly InRecord[]): Promise<void> {
    const missing = new Map<string, InRecord>();
    for (const record of records) {
      const id = record.headers.get(SCHEMA_HEADER);
      if (id !== undefined && !this.#known.has(id) && !missing.has(id)) missing.set(id, record);
    }
    if (missing.size === 0) return;
    const o = this.#o;
    const ids = () => [...missing.keys()];
    const take = (found: ReadonlyMap<string, string>) => {
      for (const [id, json] of found) {
        this.#known.set(id, json);
        missing.delete(id);
      }
    };
    if (o.targetUrl !== undefined && o.targetNode !== undefined) {
      take(await readEventSchemas(o.targetUrl, o.targetNode, ids()));
    }
    if (missing.size > 0 && o.sourceUrl !== undefined) {
      const found = await readEventSchemas(o.sourceUrl, o.sourceNode, ids());
      if (found.size > 0 && o.targetUrl !== undefined && o.targetNode !== undefined) {
        await copyEventSchemas(
          o.targetUrl,
          o.targetNode,
          [...found].map(([id, json]) => ({ id, json })),
        );
      }
      take(found);
    }
    const [id, record] = missing.entries().next().value ?? [];
    if (id !== undefined && record !== undefined) {
      throw new BlockedError(
        `record ${recordPosition(record)} names the schema ${id} (header ${SCHEMA_HEADER}), which ${o.sourceNode}'s pgbisync.event_schemas does not hold${o.targetNode === undefined ? '' : ` (nor ${o.targetNode}'s)`}`,
        {
          code: ErrorCode.SCHEMA_MISMATCH,
          hint: `${o.sourceNode}'s capture stores every schema before sending records naming it: if ${o.sourceNode}'s pgbisync schema was restored or recreated, run pgbisync so that its capture stores its tables' schemas again (the same table definition gives the same id); the stream resumes from this record`,
        },
      );
    }
  }

  /**
   * The schema `record` names (undefined when it names none). Throws for one not loaded (no source to
   * read it from): the record cannot be read.
   */
  schemaOf(record: InRecord): string | undefined {
    const id = record.headers.get(SCHEMA_HEADER);
    if (id === undefined) return undefined;
    const json = this.#known.get(id);
    if (json === undefined) {
      throw new MalformedInputError(
        `record ${recordPosition(record)}: its schema ${id} (header ${SCHEMA_HEADER}) was not found on ${this.#o.sourceNode}`,
        { code: ErrorCode.EVENT_MALFORMED },
      );
    }
    return json;
  }
}
