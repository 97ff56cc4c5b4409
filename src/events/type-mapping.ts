/**
 * PostgreSQL type -> Debezium field codec (capture), and Connect field schema -> decoder (apply).
 *
 * Both are chosen once per relation column / schema field and kept in a compiled plan, so the per-value
 * path is one indirect call. The mapping follows the Debezium PostgreSQL connector's defaults
 * (decimal.handling.mode=precise, time.precision.mode=adaptive, binary.handling.mode=bytes,
 * hstore.handling.mode=json); the deliberate differences are listed in docs/type-mapping.md.
 */
import { ErrorCode, FatalError } from '../runtime/errors.ts';
import type { ConnectSchema, FieldCodec, FieldDecoder } from './connect-schema.ts';
import {
  ARRAY_ELEMENT_OID,
  type ColumnType,
  numericTypmod,
  PgOid,
  type TypeRegistry,
  temporalPrecision,
} from './pg-types.ts';
import {
  dateDecoder,
  isoIntervalDecoder,
  microDurationDecoder,
  timeDecoder,
  timestampDecoder,
  zonedTimeDecoder,
  zonedTimestampDecoder,
} from './temporal-decoders.ts';
import { arrayCodec, arrayDecoder } from './types-array.ts';
import {
  bitCodec,
  bitsDecoder,
  boolCodec,
  booleanDecoder,
  byteaCodec,
  bytesDecoder,
  hstoreMapDecoder,
  jsonCodec,
  pointCodec,
  pointDecoder,
  stringCodec,
  stringDecoder,
  textCodec,
  uuidCodec,
  varbitCodec,
  xmlCodec,
} from './types-misc.ts';
import {
  DECIMAL_SCHEMA_NAME,
  decimalCodec,
  decimalDecoder,
  float4Codec,
  float8Codec,
  floatDecoder,
  int2Codec,
  int4Codec,
  int8Codec,
  integerDecoder,
  moneyCodec,
  oidCodec,
  VARIABLE_SCALE_DECIMAL_NAME,
  variableScaleDecimalCodec,
  variableScaleDecimalDecoder,
} from './types-numeric.ts';
import {
  dateCodec,
  type IntervalHandling,
  intervalCodec,
  timeCodec,
  timestampCodec,
  timestamptzCodec,
  timetzCodec,
} from './types-temporal.ts';

export interface TypeMappingOptions {
  /** Non-built-in types (enums, domains). Without it they use the string fallback. */
  readonly registry?: TypeRegistry;
  /** 'string' (default, exact): io.debezium.time.Interval; 'numeric': Debezium's MicroDuration. */
  readonly intervalHandling?: IntervalHandling;
}

const intervalString = intervalCodec('string');
const intervalNumeric = intervalCodec('numeric');

/** The codec for one column type. Types without a mapping get the plain-string fallback. */
export function codecForColumn(column: ColumnType, options: TypeMappingOptions = {}): FieldCodec {
  const { typeOid, typeMod } = column;
  switch (typeOid) {
    case PgOid.BOOL:
      return boolCodec;
    case PgOid.INT2:
      return int2Codec;
    case PgOid.INT4:
      return int4Codec;
    case PgOid.INT8:
      return int8Codec;
    case PgOid.OID:
      return oidCodec;
    case PgOid.FLOAT4:
      return float4Codec;
    case PgOid.FLOAT8:
      return float8Codec;
    case PgOid.NUMERIC: {
      const tm = numericTypmod(typeMod);
      return tm === undefined ? variableScaleDecimalCodec : decimalCodec(tm.precision, tm.scale);
    }
    case PgOid.MONEY:
      return moneyCodec;
    case PgOid.BYTEA:
      return byteaCodec;
    case PgOid.JSON:
    case PgOid.JSONB:
      return jsonCodec;
    case PgOid.XML:
      return xmlCodec;
    case PgOid.UUID:
      return uuidCodec;
    case PgOid.DATE:
      return dateCodec;
    case PgOid.TIME:
      return timeCodec(temporalPrecision(typeMod));
    case PgOid.TIMETZ:
      return timetzCodec;
    case PgOid.TIMESTAMP:
      return timestampCodec(temporalPrecision(typeMod));
    case PgOid.TIMESTAMPTZ:
      return timestamptzCodec(temporalPrecision(typeMod));
    case PgOid.INTERVAL:
      return options.intervalHandling === 'numeric' ? intervalNumeric : intervalString;
    case PgOid.BIT:
      return bitCodec(typeMod > 0 ? typeMod : 1);
    case PgOid.VARBIT:
      return varbitCodec;
    case PgOid.POINT:
      return pointCodec;
    default:
      break;
  }
  const element = ARRAY_ELEMENT_OID.get(typeOid);
  if (element !== undefined) return arrayCodec(codecForColumn({ typeOid: element, typeMod }, options));
  const custom = options.registry?.get(typeOid);
  if (custom !== undefined) {
    switch (custom.kind) {
      case 'enum':
        return stringCodec(
          'io.debezium.data.Enum',
          custom.labels === undefined ? undefined : { allowed: custom.labels.join(',') },
        );
      case 'domain':
        return codecForColumn(custom.base, options);
      case 'array':
        return arrayCodec(codecForColumn({ typeOid: custom.elementOid, typeMod }, options));
      case 'other':
        return textCodec;
      default:
        return custom satisfies never;
    }
  }
  // Text, varchar, bpchar, name, "char", inet, cidr, macaddr(8), ranges, tsvector and any type
  // without a mapping: the PostgreSQL text as a plain Connect string.
  return textCodec;
}

/** The decoder for a Connect field schema, from the real Debezium connector or from us. */
export function decoderForSchema(schema: ConnectSchema): FieldDecoder {
  switch (schema.name) {
    case DECIMAL_SCHEMA_NAME:
      return decimalDecoder(schema);
    case VARIABLE_SCALE_DECIMAL_NAME:
      return variableScaleDecimalDecoder;
    case 'io.debezium.time.Date':
    case 'org.apache.kafka.connect.data.Date':
      return dateDecoder;
    case 'io.debezium.time.Time':
    case 'org.apache.kafka.connect.data.Time':
      return timeDecoder('ms');
    case 'io.debezium.time.MicroTime':
      return timeDecoder('us');
    case 'io.debezium.time.NanoTime':
      return timeDecoder('ns');
    case 'io.debezium.time.Timestamp':
    case 'org.apache.kafka.connect.data.Timestamp':
      return timestampDecoder('ms');
    case 'io.debezium.time.MicroTimestamp':
      return timestampDecoder('us');
    case 'io.debezium.time.NanoTimestamp':
      return timestampDecoder('ns');
    case 'io.debezium.time.ZonedTimestamp':
      return zonedTimestampDecoder;
    case 'io.debezium.time.ZonedTime':
      return zonedTimeDecoder;
    case 'io.debezium.time.Interval':
      return isoIntervalDecoder;
    case 'io.debezium.time.MicroDuration':
      return microDurationDecoder;
    case 'io.debezium.data.Bits':
      return bitsDecoder(schema);
    case 'io.debezium.data.geometry.Point':
      return pointDecoder;
    default:
      break;
  }
  switch (schema.type) {
    case 'int8':
    case 'int16':
    case 'int32':
    case 'int64':
      return integerDecoder;
    case 'float':
    case 'double':
      return floatDecoder;
    case 'boolean':
      return booleanDecoder;
    case 'string':
      return stringDecoder;
    case 'bytes':
      return bytesDecoder;
    case 'array':
      if (schema.items === undefined) break;
      return arrayDecoder(decoderForSchema(schema.items));
    case 'map':
      if (schema.keys?.type !== 'string') break;
      return hstoreMapDecoder;
    case 'struct':
      break;
    default:
      return schema.type satisfies never;
  }
  throw new FatalError(`no PostgreSQL mapping for Connect schema ${schema.name ?? schema.type}`, {
    code: ErrorCode.TYPE_UNSUPPORTED,
    hint: 'configure the source connector to emit this column in a supported representation, or exclude the column',
  });
}
