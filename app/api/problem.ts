// RFC 9457 problem details: every API error is `application/problem+json` with per-field `errors`.
import type { ServerResponse } from 'node:http';
import type { FieldError } from '../billing/errors';

export interface Problem {
  status: number;
  title: string;
  detail?: string;
  /** A slug under /problems/, e.g. `invalid-event`. */
  type: string;
  errors?: FieldError[];
  headers?: Record<string, string>;
}

export class ProblemError extends Error {
  constructor(readonly problem: Problem) {
    super(problem.detail ?? problem.title);
  }
}

export function sendProblem(res: ServerResponse, p: Problem): void {
  const body = JSON.stringify({
    type: `/problems/${p.type}`,
    title: p.title,
    status: p.status,
    detail: p.detail ?? p.title,
    ...(p.errors ? { errors: p.errors } : {}),
  });
  res.writeHead(p.status, {
    'content-type': 'application/problem+json',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    ...p.headers,
  });
  res.end(body);
}

export function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
  res.end(body);
}
