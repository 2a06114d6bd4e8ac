import type { DeskCountLine } from '../billing/overview';

/** The overview's number for this page, read by the same function (app/billing/overview.ts readDeskCounts). */
export function DeskCount({ line }: { line: DeskCountLine | null }) {
  if (!line) return null;
  return (
    <p className="desk-count">
      {line.label}: <strong data-count={line.key}>{line.value}</strong>
    </p>
  );
}
