/**
 * The applier's side of schemaless events (`capture.schemasEnabled: false`): the schemas their
 * `pgbisync.schema` headers name, read from the source node's pgbisync.event_schemas once per id
 * (src/pg/event-schemas.ts) and kept for the decoder.
 */
import { SCHEMA_HEADER } from '../events/envelope.ts';
import { readEventSchemas } from '../pg/event-schemas.ts';
import { ErrorCode, MalformedInputError } from '../runtime/errors.ts';
import type { InRecord } from './transaction-grouper.ts';

export class EventSchemas {
  /** Unset: no source to read from (every schema named is then unknown). */
  readonly #sourceUrl: string | undefined;
  readonly #sourceNode: string;
  readonly #known = new Map<string, string>();

  constructor(sourceUrl: string | undefined, sourceNode: string) {
    this.#sourceUrl = sourceUrl;
    this.#sourceNode = sourceNode;
  }

  /** Reads the schemas `records` name that are not known yet (one query; none when all are known). */
  async load(records: readonly InRecord[]): Promise<void> {
    const missing = new Set<string>();
    for (const record of records) {
      const id = record.headers.get(SCHEMA_HEADER);
      if (id !== undefined && !this.#known.has(id)) missing.add(id);
    }
    if (missing.size === 0 || this.#sourceUrl === undefined) return;
    const found = await readEventSchemas(this.#sourceUrl, this.#sourceNode, [...missing]);
    for (const [id, json] of found) this.#known.set(id, json);
  }

  /**
   * The schema `record` names (undefined when it names none). Throws for a name the source does not
   * hold: the record cannot be read (a source restored without its pgbisync schema, a foreign producer).
   */
  schemaOf(record: InRecord): string | undefined {
    const id = record.headers.get(SCHEMA_HEADER);
    if (id === undefined) return undefined;
    const json = this.#known.get(id);
    if (json === undefined) {
      throw new MalformedInputError(
        `record ${record.topic}[${record.partition}]@${record.offset}: its schema ${id} (header ${SCHEMA_HEADER}) is not in ${this.#sourceNode}'s pgbisync.event_schemas`,
        {
          code: ErrorCode.EVENT_MALFORMED,
          hint: `the capture of ${this.#sourceNode} stores every schema before sending records naming it: this record was not written by it, or ${this.#sourceNode}'s pgbisync schema was restored without it`,
        },
      );
    }
    return json;
  }
}
