/**
 * Arrays: PostgreSQL array text ('{1,2,NULL}', '{"a b","c\"d"}', '{{1,2},{3,4}}') <-> Connect ARRAY
 * of the element type's schema (elements optional), as Debezium maps arrays.
 *
 * Multi-dimensional arrays are emitted as nested JSON arrays (Debezium has no mapping for them).
 * Explicit lower bounds ('[0:1]={1,2}') are not representable and are dropped: the value comes back
 * with lower bound 1.
 */
import {
  badText,
  badValue,
  type FieldCodec,
  type FieldDecoder,
  type JsonValue,
  UNAVAILABLE_JSON,
  UNAVAILABLE_PLACEHOLDER,
  UNAVAILABLE_PLACEHOLDER_CODES,
} from './connect-schema.ts';

/** A parsed array: elements are text, null, or nested arrays (more dimensions). */
export type ArrayItems = (string | null | ArrayItems)[];

/** Parses array_out text. */
export function parseArrayText(text: string): ArrayItems {
  let i = 0;
  if (text.charCodeAt(0) === 91 /* [ */) {
    i = text.indexOf('=');
    if (i < 0) throw badText('array', text);
    i++;
  }
  const n = text.length;
  const parseLevel = (): ArrayItems => {
    if (text.charCodeAt(i) !== 123 /* { */) throw badText('array', text);
    i++;
    const items: ArrayItems = [];
    if (text.charCodeAt(i) === 125 /* } */) {
      i++;
      return items;
    }
    for (;;) {
      const c = text.charCodeAt(i);
      if (c === 123) {
        items.push(parseLevel());
      } else if (c === 34 /* " */) {
        i++;
        let value = '';
        let start = i;
        for (;;) {
          if (i >= n) throw badText('array', text);
          const d = text.charCodeAt(i);
          if (d === 34) break;
          if (d === 92 /* \ */) {
            value += text.slice(start, i);
            i++;
            start = i;
          }
          i++;
        }
        items.push(value + text.slice(start, i));
        i++;
      } else {
        const start = i;
        while (i < n && text.charCodeAt(i) !== 44 && text.charCodeAt(i) !== 125) i++;
        const raw = text.slice(start, i).trim();
        if (raw === '') throw badText('array', text);
        items.push(raw.length === 4 && raw.toUpperCase() === 'NULL' ? null : raw.replace(/\\(.)/g, '$1'));
      }
      const sep = text.charCodeAt(i);
      i++;
      if (sep === 125) return items;
      if (sep !== 44) throw badText('array', text);
    }
  };
  const items = parseLevel();
  if (i !== n) throw badText('array', text);
  return items;
}

const INT_ELEMENT_TYPES = new Set(['int16', 'int32', 'int64']);

/** ARRAY of the element codec's schema. */
/** `itemsOptional` false for enum elements, as the connector marks them. */
export function arrayCodec(element: FieldCodec, itemsOptional = true): FieldCodec {
  const toJson = element.toJson;
  const encode = (items: ArrayItems): string => {
    let out = '[';
    for (let k = 0; k < items.length; k++) {
      if (k > 0) out += ',';
      const item = items[k]!;
      out += item === null ? 'null' : typeof item === 'string' ? toJson(item) : encode(item);
    }
    return `${out}]`;
  };
  // Debezium's placeholders (UnchangedToastedPlaceholder): the placeholder's bytes for integer arrays,
  // a one-element list of the string placeholder otherwise.
  const unavailableJson =
    element.schema.name === undefined && INT_ELEMENT_TYPES.has(element.schema.type)
      ? `[${UNAVAILABLE_PLACEHOLDER_CODES.join(',')}]`
      : `[${UNAVAILABLE_JSON}]`;
  return {
    schema: { type: 'array', items: { ...element.schema, optional: itemsOptional } },
    toJson: (text) => encode(parseArrayText(text)),
    unavailableJson,
  };
}

const NEEDS_QUOTES = /[{}",\\\s]/;

function quoteElement(text: string): string {
  if (text === '' || NEEDS_QUOTES.test(text) || (text.length === 4 && text.toUpperCase() === 'NULL')) {
    return `"${text.replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"`;
  }
  return text;
}

function isPlaceholderArray(value: JsonValue): boolean {
  if (!Array.isArray(value)) return false;
  if (value.length === 1) return value[0] === UNAVAILABLE_PLACEHOLDER;
  if (value.length !== UNAVAILABLE_PLACEHOLDER_CODES.length) return false;
  for (let i = 0; i < value.length; i++) if (value[i] !== UNAVAILABLE_PLACEHOLDER_CODES[i]) return false;
  return true;
}

/** ARRAY -> array literal ('{1,NULL,"a b"}'), nested JSON arrays -> more dimensions. */
export function arrayDecoder(element: FieldDecoder): FieldDecoder {
  const format = (items: readonly JsonValue[]): string => {
    let out = '{';
    for (let k = 0; k < items.length; k++) {
      if (k > 0) out += ',';
      const item = items[k]!;
      if (item === null) out += 'NULL';
      else if (Array.isArray(item)) out += format(item as readonly JsonValue[]);
      else out += quoteElement(element.toText(item));
    }
    return `${out}}`;
  };
  return {
    toText: (value) => {
      if (!Array.isArray(value)) throw badValue('an array', value);
      return format(value as readonly JsonValue[]);
    },
    isUnavailable: isPlaceholderArray,
  };
}
