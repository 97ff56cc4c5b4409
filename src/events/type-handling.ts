/**
 * The Debezium PostgreSQL connector's type-handling options, under the connector's own names, as
 * pgbisync's capture offers them (`capture.types` in the config). pgbisync's defaults are exact: they
 * differ from the connector's where the connector's default loses information (`interval`), and
 * equal them elsewhere. A user replacing a connector sets the connector's values and keeps its
 * consumers unchanged; docs/type-mapping.md lists what each value sends and what it loses.
 */
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

export const TYPE_HANDLING_VALUES = {
  'interval.handling.mode': ['string', 'numeric'],
  'time.precision.mode': ['adaptive', 'adaptive_time_microseconds', 'connect'],
  'decimal.handling.mode': ['precise', 'string', 'double'],
  'binary.handling.mode': ['bytes', 'base64', 'base64-url-safe', 'hex'],
  'hstore.handling.mode': ['json', 'map'],
  varbit: ['string', 'bits'],
  timetz: ['offset', 'utc'],
} as const satisfies { readonly [K in keyof TypeHandling]: readonly TypeHandling[K][] };

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
