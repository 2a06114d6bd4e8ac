// The desk's table, pager and filter bar: one markup for every list, so each page says only what its columns,
// filters and pages are. The table scrolls in its own labelled region (keyboard-focusable) and, with `cards`, reads as
// one card per row on a narrow screen, each cell labelled by its column (`data-label`, see app.css `.card-table`).
import type { ReactNode } from 'react';
import { Form, Link } from 'react-router';

export interface Column<Row> {
  /** The column heading; also the cell's label when the table reads as cards. */
  header: string;
  cell: (row: Row) => ReactNode;
  /** The cell that names the row: a `<th scope="row">`. */
  rowHeader?: boolean;
  numeric?: boolean;
  className?: string;
  /** A heading only screen readers read (e.g. an action column). */
  hiddenHeader?: boolean;
  /** The cell's label when the table reads as cards, where it is shorter than the header. */
  cardLabel?: string;
  /** Data attributes a test or script finds the cell by (e.g. `data-count`). */
  cellData?: (row: Row) => Record<`data-${string}`, string>;
}

export function DeskTable<Row>(props: {
  /** The region's accessible name. */
  label: string;
  rows: readonly Row[];
  rowKey: (row: Row, index: number) => string;
  columns: ReadonlyArray<Column<Row> | false | null | undefined>;
  caption?: ReactNode;
  /** A caption only screen readers read. */
  hiddenCaption?: boolean;
  /** One card per row on a narrow screen. */
  cards?: boolean;
  className?: string;
  /** Shown instead of the table when there are no rows (nothing when absent). */
  empty?: ReactNode;
  rowProps?: (row: Row) => { className?: string; 'aria-current'?: 'true' | undefined };
}) {
  const columns = props.columns.filter((c): c is Column<Row> => Boolean(c));
  if (props.rows.length === 0 && props.empty !== undefined) return <p className="empty">{props.empty}</p>;
  const classes = ['data-table', props.cards ? 'card-table' : '', props.className ?? ''].filter(Boolean).join(' ');
  const cellClass = (c: Column<Row>) => [c.numeric ? 'numeric' : '', c.className ?? ''].filter(Boolean).join(' ') || undefined;
  return (
    <div className="table-scroll" role="region" aria-label={props.label} tabIndex={0}>
      <table className={classes}>
        {props.caption ? <caption className={props.hiddenCaption ? 'visually-hidden' : undefined}>{props.caption}</caption> : null}
        <thead>
          <tr>
            {columns.map((c) => (
              <th key={c.header} scope="col" className={cellClass(c)}>
                {c.hiddenHeader ? <span className="visually-hidden">{c.header}</span> : c.header}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {props.rows.map((row, i) => (
            <tr key={props.rowKey(row, i)} {...props.rowProps?.(row)}>
              {columns.map((c) =>
                c.rowHeader ? (
                  <th key={c.header} scope="row" className={cellClass(c)}>
                    {c.cell(row)}
                  </th>
                ) : (
                  <td key={c.header} data-label={c.cardLabel ?? c.header} className={cellClass(c)} {...c.cellData?.(row)}>
                    {c.cell(row)}
                  </td>
                ),
              )}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/** "—" for a value that is not there. */
export function Missing() {
  return <span className="muted">—</span>;
}

export type PageDirection = 'newer' | 'older';

/** The href of one keyset page: the page's filters (blank ones dropped) with the cursor and its direction. */
export function pageHref(path: string, filters: Record<string, string>, cursor: string, direction: PageDirection): string {
  const params = new URLSearchParams(Object.entries(filters).filter(([, v]) => v !== ''));
  params.set('cursor', cursor);
  params.set('direction', direction);
  return `${path}?${params}`;
}

/** Keyset pages: the cursors a presenter returns (null at either end), as links that keep the filters. */
export function KeysetPager(props: {
  label: string;
  path: string;
  filters: Record<string, string>;
  newer: string | null | undefined;
  older: string | null | undefined;
  newerText?: string;
  olderText?: string;
}) {
  if (!props.newer && !props.older) return null;
  return (
    <nav aria-label={props.label} className="pagination">
      {props.newer ? (
        <Link to={pageHref(props.path, props.filters, props.newer, 'newer')} rel="prev">
          ← {props.newerText ?? 'Newer'}
        </Link>
      ) : null}
      {props.older ? (
        <Link to={pageHref(props.path, props.filters, props.older, 'older')} rel="next">
          {props.olderText ?? 'Older'} →
        </Link>
      ) : null}
    </nav>
  );
}

/** A GET form of filters: the fields, then Apply and (when something is filtered) Clear back to `clearTo`. */
export function FilterBar(props: { children: ReactNode; filtered: boolean; clearTo: string; label?: string; applyText?: string; formKey?: string; role?: 'search' }) {
  return (
    <Form method="get" className="filters" aria-label={props.label} key={props.formKey} role={props.role}>
      {props.children}
      <div className="form-actions">
        <button type="submit" className="button button-primary">
          {props.applyText ?? 'Apply filters'}
        </button>
        {props.filtered ? (
          <Link to={props.clearTo} className="button button-quiet">
            Clear
          </Link>
        ) : null}
      </div>
    </Form>
  );
}

/** One labelled input of a filter bar. */
export function FilterInput(props: { id: string; name: string; label: string; value: string; type?: 'text' | 'datetime-local' | 'search' | 'date'; placeholder?: string }) {
  return (
    <div className="field">
      <label htmlFor={props.id}>{props.label}</label>
      <input id={props.id} name={props.name} type={props.type ?? 'text'} defaultValue={props.value} placeholder={props.placeholder} />
    </div>
  );
}

/** One labelled select of a filter bar, "any" first. */
export function FilterSelect(props: { id: string; name: string; label: string; value: string; anyLabel: string; options: ReadonlyArray<{ value: string; label: string }> }) {
  return (
    <div className="field">
      <label htmlFor={props.id}>{props.label}</label>
      <select id={props.id} name={props.name} defaultValue={props.value}>
        <option value="">{props.anyLabel}</option>
        {props.options.map((o) => (
          <option key={o.value} value={o.value}>
            {o.label}
          </option>
        ))}
      </select>
    </div>
  );
}

export type Fields = ReadonlyArray<readonly [string, ReactNode] | false | null | undefined>;

/** One object's fields as a two-column table: the field's name as the row's heading. */
export function FieldTable({ label, fields }: { label: string; fields: Fields }) {
  return (
    <div className="table-scroll" role="region" aria-label={label} tabIndex={0}>
      <table className="data-table">
        <tbody>
          {fields
            .filter((f): f is readonly [string, ReactNode] => Boolean(f))
            .map(([name, value]) => (
              <tr key={name}>
                <th scope="row">{name}</th>
                <td>{value ?? <Missing />}</td>
              </tr>
            ))}
        </tbody>
      </table>
    </div>
  );
}
