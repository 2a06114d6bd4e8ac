import { v7 as uuidv7 } from 'uuid';

/** Time-ordered ids for ledger rows: the primary key doubles as an insertion-order index. */
export function newEventId(): string {
  return uuidv7();
}

/** The identifier of an event sent without one: unique because the id is (never a short hash). */
export function derivedIdentifier(eventId: string): string {
  return `md_${eventId}`;
}
