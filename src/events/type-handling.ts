/**
 * The Debezium PostgreSQL connector's type-handling options, under the connector's own names, as
 * pgbisync's capture offers them (`capture.types` in the config). pgbisync's defaults are exact: they
 * differ from the connector's where the connector's default loses information (`interval`, and what
 * it does without an option: `varbit`, `timetz`), and equal them elsewhere. A user replacing a
 * connector sets the connector's values and keeps its consumers unchanged; docs/type-mapping.md lists
 * what each value sends and what it loses.
 */
import type { Config } from '../config/schema.ts';

export interface TypeHandling {
  /** 'string' (pgbisync's default, exact): io.debezium.time.Interval; 'numeric' (the connector's): MicroDuration. */
  readonly 'interval.handling.mode': 'string' | 'numeric';
  /** 'adaptive' (both defaults), 'adaptive_time_microseconds', 'connect' (Kafka Connect's logical types, ms). */
  readonly 'time.precision.mode': 'adaptive' | 'adaptive_time_microseconds' | 'connect';
  /** 'precise' (both defaults): Decimal bytes; 'string'; 'double' (lossy). */
  readonly 'decimal.handling.mode': 'precise' | 'string' | 'double';
  /** 'bytes' (both defaults); 'base64', 'base64-url-safe', 'hex': a string. */
  readonly 'binary.handling.mode': 'bytes' | 'base64' | 'base64-url-safe' | 'hex';
  /** 'json' (the connector's default): io.debezium.data.Json; 'map' (pgbisync's default): a Connect map. */
  readonly 'hstore.handling.mode': 'json' | 'map';
  /**
   * pgbisync's own (the connector has no option: it always sends Bits). 'string' (default, exact): the
   * bit text; 'bits': io.debezium.data.Bits as the connector sends it, which drops leading zeros.
   */
  readonly varbit: 'string' | 'bits';
  /**
   * pgbisync's own (the connector always shifts to UTC). 'offset' (default, exact): the value's own
   * offset; 'utc': shifted to UTC as the connector sends it, which loses the offset.
   */
  readonly timetz: 'offset' | 'utc';
}

/** The config's `capture.types` is this, key for key and value for value (checked at compile time). */
type ConfigTypes = Config['capture']['types'];
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const CONFIG_MATCHES: Same<ConfigTypes, TypeHandling> = true;
void CONFIG_MATCHES;

/** pgbisync's defaults. */
export const DEFAULT_TYPE_HANDLING: TypeHandling = {
  'interval.handling.mode': 'string',
  'time.precision.mode': 'adaptive',
  'decimal.handling.mode': 'precise',
  'binary.handling.mode': 'bytes',
  'hstore.handling.mode': 'map',
  varbit: 'string',
  timetz: 'offset',
};

/** What the connector sends with its defaults (Debezium 3.x). */
export const CONNECTOR_TYPE_HANDLING: TypeHandling = {
  ...DEFAULT_TYPE_HANDLING,
  'interval.handling.mode': 'numeric',
  'hstore.handling.mode': 'json',
  varbit: 'bits',
  timetz: 'utc',
};
