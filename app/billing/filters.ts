// The desk's filter parsing, shared by every list: the query's filled parameters, a UTC minute from a
// datetime-local input, bounded text, and the keyset cursor and direction every paged list takes.
import { z } from 'zod';

/** The query string's parameters that carry a value (an empty input is no filter), minus `skip`. */
export function filledParams(params: URLSearchParams, skip: readonly string[] = []): Record<string, string> {
  return Object.fromEntries([...params].filter(([k, v]) => v.trim() !== '' && !skip.includes(k)));
}

// datetime-local inputs carry no zone; the desk speaks UTC everywhere.
export const utcMinute = z
  .string()
  .regex(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?$/)
  .transform((v) => new Date(`${v}Z`))
  .refine((d) => !Number.isNaN(d.getTime()));

export const filterText = (max: number) => z.string().trim().min(1).max(max);

/** A keyset page's position: an opaque cursor and which way from it (bad values fall back to the first page). */
export const pageFields = {
  cursor: z.string().max(200).optional().catch(undefined),
  direction: z.enum(['older', 'newer']).catch('older'),
};

/**
 * One keyset page from rows read one past `size` in the direction asked (newest first, or oldest first when going
 * `newer`): the page newest first and the cursors either way. Going newer, "more" means more newer rows; and as we
 * arrived from an older page, an older page exists. The first page (no cursor) has no newer one.
 */
export function keysetPage<Row, Item>(
  rows: readonly Row[],
  o: { size: number; newer: boolean; fromCursor: boolean; toItem: (row: Row) => Item; cursorOf: (item: Item) => string },
): { items: Item[]; older: string | null; newer: string | null } {
  const more = rows.length > o.size;
  const page = rows.slice(0, o.size);
  if (o.newer) page.reverse();
  const items = page.map(o.toItem);
  const first = items[0];
  const last = items.at(-1);
  return {
    items,
    older: last !== undefined && (o.newer || more) ? o.cursorOf(last) : null,
    newer: first !== undefined && (o.newer ? more : o.fromCursor) ? o.cursorOf(first) : null,
  };
}

/** A query's placeholder maker: appends the value to `params` and returns its `$n`. */
export function placeholders(params: unknown[]): (value: unknown) => string {
  return (value) => {
    params.push(value);
    return `$${params.length}`;
  };
}
