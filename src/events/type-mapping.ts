/**
 * PostgreSQL type -> Debezium field codec (capture), and Connect field schema -> decoder (apply).
 *
 * Both are chosen once per relation column / schema field and kept in a compiled plan, so the per-value
 * path is one indirect call. The mapping follows the Debezium PostgreSQL connector's defaults
 * (decimal.handling.mode=precise, time.precision.mode=adaptive, binary.handling.mode=bytes), with
 * its options under its own names (./type-handling.ts); the deliberate differences are listed in
 * docs/type-mapping.md.
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
import type { TypeHandling } from './type-handling.ts';
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
  binaryStringCodec,
  binaryStringDecoder,
  CONNECT_DATE,
  CONNECT_TIMESTAMP,
  connectTimeCodec,
  decimalDoubleCodec,
  decimalStringCodec,
  ENCODING_PARAMETER,
  hstoreCodec,
  hstoreJsonDecoder,
  microTimeCodec,
  renamed,
  timetzUtcCodec,
  tsvectorCodec,
} from './types-modes.ts';
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
  intervalCodec,
  timeCodec,
  timestampCodec,
  timestamptzCodec,
  timetzCodec,
} from './types-temporal.ts';

export interface TypeMappingOptions {
  /** Non-built-in types (enums, domains). Without it they use the string fallback. */
  readonly registry?: TypeRegistry;
  /** The connector's type-handling options (./type-handling.ts); unset ones take pgbisync's defaults. */
  readonly types?: Partial<TypeHandling>;
}

const intervalString = intervalCodec('string');
const intervalNumeric = intervalCodec('numeric');

/** The codec for one column type. Types without a mapping get the plain-string fallback. */
export function codecForColumn(column: ColumnType, options: TypeMappingOptions = {}): FieldCodec {
  const { typeOid, typeMod } = column;
  const types = options.types ?? {};
  const time = types['time.precision.mode'] ?? 'adaptive';
  const decimal = types['decimal.handling.mode'] ?? 'precise';
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
    case PgOid.NUMERIC:
    case PgOid.MONEY: {
      const money = typeOid === PgOid.MONEY;
      if (decimal === 'string') return decimalStringCodec(money);
      if (decimal === 'double') return decimalDoubleCodec(money);
      if (money) return moneyCodec;
      const tm = numericTypmod(typeMod);
      return tm === undefined ? variableScaleDecimalCodec : decimalCodec(tm.precision, tm.scale);
    }
    case PgOid.BYTEA: {
      const binary = types['binary.handling.mode'] ?? 'bytes';
      return binary === 'bytes' ? byteaCodec : binaryStringCodec(binary);
    }
    case PgOid.JSON:
    case PgOid.JSONB:
      return jsonCodec;
    case PgOid.XML:
      return xmlCodec;
    case PgOid.UUID:
      return uuidCodec;
    case PgOid.DATE:
      return time === 'connect' ? renamed(dateCodec, CONNECT_DATE) : dateCodec;
    case PgOid.TIME:
      if (time === 'connect') return connectTimeCodec;
      return time === 'adaptive_time_microseconds' ? microTimeCodec : timeCodec(temporalPrecision(typeMod));
    case PgOid.TIMETZ:
      return types.timetz === 'utc' ? timetzUtcCodec : timetzCodec;
    case PgOid.TIMESTAMP:
      if (time === 'connect') return renamed(timestampCodec(3), CONNECT_TIMESTAMP);
      return timestampCodec(temporalPrecision(typeMod));
    case PgOid.TIMESTAMPTZ:
      return timestamptzCodec(temporalPrecision(typeMod));
    case PgOid.INTERVAL:
      return types['interval.handling.mode'] === 'numeric' ? intervalNumeric : intervalString;
    case PgOid.BIT:
      return bitCodec(typeMod > 0 ? typeMod : 1);
    case PgOid.VARBIT:
      // The connector's length parameter: the typmod, or Integer.MAX_VALUE when unbounded.
      return types.varbit === 'bits' ? bitCodec(typeMod > 0 ? typeMod : 2147483647) : varbitCodec;
    case PgOid.POINT:
      return pointCodec;
    case PgOid.TSVECTOR:
      return tsvectorCodec;
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
      case 'array': {
        const itemsOptional = options.registry?.get(custom.elementOid)?.kind !== 'enum';
        const codec = codecForColumn({ typeOid: custom.elementOid, typeMod }, options);
        return arrayCodec(codec, itemsOptional);
      }
      case 'other':
        return HSTORE.test(custom.name) ? hstoreCodec(types['hstore.handling.mode'] ?? 'map') : textCodec;
      default:
        return custom satisfies never;
    }
  }
  // Text, varchar, bpchar, name, "char", inet, cidr, macaddr(8), ranges and any type without a
  // mapping: the PostgreSQL text as a plain Connect string.
  return textCodec;
}

/** The hstore extension's type, in whichever schema it was installed. */
const HSTORE = /\.(?:hstore|"hstore")$/;

/** The decoder for a Connect field schema, from the real Debezium connector or from us. */
export function decoderForSchema(schema: ConnectSchema): FieldDecoder {
  const encoding = schema.parameters?.[ENCODING_PARAMETER];
  if (encoding === 'base64' || encoding === 'base64-url-safe' || encoding === 'hex')
    return binaryStringDecoder(encoding);
  if (encoding === 'hstore-json') return hstoreJsonDecoder(hstoreMapDecoder);
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
