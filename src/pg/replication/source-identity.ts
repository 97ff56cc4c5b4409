/**
 * Which WAL a change comes from: the source cluster's system identifier and the timeline its server
 * writes, with the timeline's history (IDENTIFY_SYSTEM and TIMELINE_HISTORY on the replication
 * connection: https://www.postgresql.org/docs/current/protocol-replication.html).
 *
 * An LSN only orders changes within one line of WAL. A promoted standby (failover) or a point-in-time
 * restore starts a new timeline that forks from its parent at the switch point: below it the two
 * timelines hold the same WAL (the same transactions at the same LSNs), at and after it different ones,
 * at LSNs the parent may already have used. The applier needs this to tell a transaction it applied
 * from a new one at a reused LSN (../../offsets/source-watermark.ts).
 */
import { ErrorCode, RetryableError } from '../../runtime/errors.ts';
import { formatLsn, parseLsn } from '../lsn.ts';

/** One ancestor of a timeline: it ended at `switchLsn`, where the next timeline of the line began. */
export interface TimelineSwitch {
  readonly timeline: number;
  readonly switchLsn: bigint;
}

export interface SourceIdentity {
  /** The cluster's system identifier (decimal, a uint64): differs between clusters, kept by standbys. */
  readonly systemId: string;
  /** The timeline the server writes (IDENTIFY_SYSTEM's `timeline`). */
  readonly timeline: number;
  /** The timeline's ancestors, oldest first (its history file); empty for timeline 1. */
  readonly history: readonly TimelineSwitch[];
}

/** What runs a replication command (a ReplicationConnection fits). */
export interface ReplicationCommands {
  command(sql: string): Promise<{ rows: Record<string, unknown>[] }>;
}

/**
 * The identity of the server at the other end of a replication connection. Run it before
 * CREATE_REPLICATION_SLOT: the snapshot that command exports lasts only until the connection's next
 * command.
 */
export async function identifySource(conn: ReplicationCommands): Promise<SourceIdentity> {
  const r = await conn.command('IDENTIFY_SYSTEM');
  const row = r.rows[0];
  const systemId = String(row?.systemid ?? '');
  const timeline = Number(row?.timeline);
  if (!/^[0-9]{1,20}$/.test(systemId) || !isTimeline(timeline)) {
    // Retried, as a slot creation answered without its row is (../../source/slot-setup.ts).
    throw new RetryableError(
      `IDENTIFY_SYSTEM answered system identifier '${systemId}' and timeline '${String(row?.timeline)}', not numbers`,
      {
        code: ErrorCode.PG_CONNECTION,
        hint: 'check that the node url points at PostgreSQL itself, not at a connection pooler',
      },
    );
  }
  if (timeline === 1) return { systemId, timeline, history: [] };
  const h = await conn.command(`TIMELINE_HISTORY ${timeline}`);
  return { systemId, timeline, history: parseTimelineHistory(historyText(h.rows[0]?.content)) };
}

/** The content column of TIMELINE_HISTORY: raw bytes (sent as text), or bytea's hex form. */
function historyText(content: unknown): string {
  if (Buffer.isBuffer(content)) return content.toString('utf8');
  const text = String(content ?? '');
  return text.startsWith('\\x') ? Buffer.from(text.slice(2), 'hex').toString('utf8') : text;
}

/**
 * A timeline history file: one line per ancestor, `<timeline>\t<switch LSN>\t<reason>`, oldest first;
 * blank lines and `#` comments skipped (PostgreSQL's readTimeLineHistory reads it so).
 */
export function parseTimelineHistory(text: string): TimelineSwitch[] {
  const out: TimelineSwitch[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const [tli, lsn] = line.split(/\s+/);
    const timeline = Number(tli);
    if (!isTimeline(timeline) || lsn === undefined) {
      throw new Error(`timeline history line '${line}' is not '<timeline> <switch LSN> <reason>'`);
    }
    out.push({ timeline, switchLsn: parseLsn(lsn) });
  }
  return out;
}

/**
 * The LSN up to which the WAL of `a` and `b` is the same: undefined when they are one timeline (no
 * fork); else where the deeper of their common ancestors ended in either line (the lower of the two);
 * 0 when they share no timeline (nothing in common is known). Both must be of one cluster.
 */
export function forkLsn(a: SourceIdentity, b: SourceIdentity): bigint | undefined {
  if (a.timeline === b.timeline) return undefined;
  const endsOf = (x: SourceIdentity) =>
    new Map<number, bigint | undefined>([
      ...x.history.map((h) => [h.timeline, h.switchLsn] as const),
      [x.timeline, undefined],
    ]);
  const endsA = endsOf(a);
  const endsB = endsOf(b);
  let common: number | undefined;
  for (const tli of endsA.keys()) if (endsB.has(tli) && (common === undefined || tli > common)) common = tli;
  if (common === undefined) return 0n;
  const ea = endsA.get(common);
  const eb = endsB.get(common);
  if (ea === undefined) return eb ?? 0n;
  if (eb === undefined) return ea;
  return ea < eb ? ea : eb;
}

/** `<system identifier>:<timeline>`, the header's form (`7581234567890123456:2`). */
export function formatIdentity(id: Pick<SourceIdentity, 'systemId' | 'timeline'>): string {
  return `${id.systemId}:${id.timeline}`;
}

/** `<timeline>@<switch LSN>,...`, oldest first (`1@0/3000060,2@0/5000000`); '' for none. */
export function formatHistory(history: readonly TimelineSwitch[]): string {
  return history.map((h) => `${h.timeline}@${formatLsn(h.switchLsn)}`).join(',');
}

/** Reads {@link formatIdentity} and {@link formatHistory}; throws naming the text that is neither. */
export function parseIdentity(identity: string, history: string): SourceIdentity {
  const m = /^([0-9]{1,20}):([1-9][0-9]{0,9})$/.exec(identity);
  if (m === null) throw new Error(`source identity '${identity}' is not <system identifier>:<timeline>`);
  const timeline = Number(m[2]);
  if (!isTimeline(timeline)) throw new Error(`source identity '${identity}': timeline out of range`);
  const switches =
    history === ''
      ? []
      : history.split(',').map((part) => {
          const h = /^([1-9][0-9]{0,9})@([0-9A-Fa-f]{1,8}\/[0-9A-Fa-f]{1,8})$/.exec(part);
          const tli = Number(h?.[1]);
          if (h === null || !isTimeline(tli) || tli >= timeline) {
            throw new Error(
              `timeline history '${history}': '${part}' is not <ancestor timeline>@<LSN> of timeline ${timeline}`,
            );
          }
          return { timeline: tli, switchLsn: parseLsn(h[2]!) };
        });
  return { systemId: m[1]!, timeline, history: switches };
}

function isTimeline(n: number): boolean {
  return Number.isInteger(n) && n >= 1 && n <= 0xffffffff;
}
