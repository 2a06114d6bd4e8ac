// Settlement of a closed window: at most one charge per window, through one charge attempt whose order id is
// derived from the window. A sale is sent only after its attempt is durably marked as "sent" (state `settling`,
// tries + 1, last_sent_at), so a worker killed mid-sale leaves a trace; the next run searches the order id before
// any new sale and adopts what it finds. A session advisory lock per window (held across the HTTP call, released by
// PostgreSQL when the worker dies) tells a live settler from a dead one. State moves are guarded updates and ops
// events are written only when the row moved. Decisions: docs/decisions (Braintree windows ADR).
//
// Split by job: model.ts (policy, options, results, order id, lock key), attempt.ts (the attempt's state machine,
// settleWindow), search.ts (search and adoption of a sale whose answer was lost), outcomes.ts (recording what a
// sale answered), batch.ts (sending many windows' sales, settleWindows), operator.ts (settle again, write off),
// sweep.ts (the crontab's sweep).
export { DEFAULT_RETRY_POLICY, orderIdFor, type RetryPolicy, type SettleOutcome, type SettleResult, type SettlementOptions } from './settlement/model';
export { settleWindow } from './settlement/attempt';
export { DEFAULT_SALES_IN_FLIGHT, settleWindows } from './settlement/batch';
export { SETTLE_AGAIN_STATES, settleAgain, writeOffWindow } from './settlement/operator';
export { sweepSettlements } from './settlement/sweep';
