import type { IncomingMessage } from 'node:http';
import { ProblemError } from './problem';

export const MAX_BODY_BYTES = 1024 * 1024;

/** Reads a JSON body: 415 for another media type, 413 past 1 MiB (without buffering the rest), 400 for bad JSON. */
export async function readJson(req: IncomingMessage, limit = MAX_BODY_BYTES): Promise<unknown> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/json' && !type.endsWith('+json')) {
    throw new ProblemError({ status: 415, type: 'unsupported-media-type', title: 'Unsupported media type', detail: 'send the body as application/json' });
  }
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (declared > limit) throw tooLarge(limit, req);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw tooLarge(limit, req);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ProblemError({ status: 400, type: 'malformed-json', title: 'Malformed JSON', detail: `the body is not valid JSON: ${(e as Error).message}` });
  }
}

function tooLarge(limit: number, req: IncomingMessage) {
  // Answer at once and close: reading a huge body to the end only to refuse it wastes the server.
  req.resume();
  return new ProblemError({
    status: 413,
    type: 'payload-too-large',
    title: 'Payload too large',
    detail: `the body must be at most ${limit} bytes`,
    headers: { connection: 'close' },
  });
}
