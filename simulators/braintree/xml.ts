// Braintree's gateway XML dialect: dashed element names, `type="integer|boolean|datetime|date|array|collection"`
// and `nil="true"` attributes. The braintree SDK parses it with xml2js and `Util.convertNodeToObject`, which is
// what turns `type="array"` into JS arrays, `nil` into null and dashed names into camelCase.

export const XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n';

export function escapeXml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => (c === '&' ? '&amp;' : c === '<' ? '&lt;' : c === '>' ? '&gt;' : c === '"' ? '&quot;' : '&apos;'));
}

export const nil = (name: string): string => `<${name} nil="true"/>`;

/** A text element; null/undefined become `nil="true"` (the SDK reads them as null). */
export function text(name: string, value: string | null | undefined): string {
  return value === null || value === undefined ? nil(name) : `<${name}>${escapeXml(value)}</${name}>`;
}

export function int(name: string, value: number | null | undefined): string {
  return value === null || value === undefined ? nil(name) : `<${name} type="integer">${Math.trunc(value)}</${name}>`;
}

export function bool(name: string, value: boolean | null | undefined): string {
  return value === null || value === undefined ? nil(name) : `<${name} type="boolean">${value ? 'true' : 'false'}</${name}>`;
}

/** Braintree datetimes are UTC with second precision: `2013-11-20T23:05:36Z`. */
export function isoSeconds(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}

export function datetime(name: string, ms: number | null | undefined): string {
  return ms === null || ms === undefined ? nil(name) : `<${name} type="datetime">${isoSeconds(ms)}</${name}>`;
}

/** Calendar dates (`YYYY-MM-DD`), as in subscription billing periods. */
export function date(name: string, value: string | null | undefined): string {
  return value === null || value === undefined ? nil(name) : `<${name} type="date">${escapeXml(value)}</${name}>`;
}

export function node(name: string, children: readonly string[]): string {
  return children.length === 0 ? `<${name}/>` : `<${name}>${children.join('')}</${name}>`;
}

export function array(name: string, items: readonly string[]): string {
  return items.length === 0 ? `<${name} type="array"/>` : `<${name} type="array">${items.join('')}</${name}>`;
}

export function document(root: string): string {
  return XML_DECLARATION + root + '\n';
}

const dashed = (key: string): string => key.replace(/_/g, '-');

/**
 * Echoes request parameters the way the gateway does in `<params>` of an api-error-response: nested elements
 * with dashed names and plain text leaves (the request arrives with underscored keys).
 */
export function paramsXml(name: string, value: unknown, depth = 0): string {
  if (depth > 8) return '';
  const tag = dashed(name);
  if (value === null || value === undefined) return nil(tag);
  if (Array.isArray(value)) return array(tag, value.map((v) => paramsXml('item', v, depth + 1)));
  if (typeof value === 'object') {
    return node(
      tag,
      Object.entries(value as Record<string, unknown>)
        .filter(([k]) => /^[A-Za-z][A-Za-z0-9_-]*$/.test(k))
        .map(([k, v]) => paramsXml(k, v, depth + 1)),
    );
  }
  return `<${tag}>${escapeXml(String(value))}</${tag}>`;
}
