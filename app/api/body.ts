import type { IncomingMessage } from 'node:http';
import { ProblemError } from './problem';

export const MAX_BODY_BYTES = 1024 * 1024;

/** Reads a JSON body: 415 for another media type, 413 past 1 MiB (without buffering the rest), 400 for bad JSON. */
export async function readJson(req: IncomingMessage, limit = MAX_BODY_BYTES): Promise<unknown> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/json' && !type.endsWith('+json')) {
    throw new ProblemError({ status: 415, type: 'unsupported-media-type', title: 'Unsupported media type', detail: 'send the body as application/json' });
  }
  const body = await readBody(req, limit);
  if (body === null) throw tooLarge(limit, req);
  try {
    return JSON.parse(body.toString('utf8'));
  } catch (e) {
    throw new ProblemError({ status: 400, type: 'malformed-json', title: 'Malformed JSON', detail: `the body is not valid JSON: ${(e as Error).message}` });
  }
}

/**
 * The body as sent, or null past `limit` bytes (declared or read); the rest is then drained, not buffered. Listeners
 * rather than `for await`: leaving an async iterator early destroys the socket, so a 413 would never reach the
 * sender, and iterating costs a promise per chunk on the single-event ingest path.
 */
export function readBody(req: IncomingMessage, limit = MAX_BODY_BYTES): Promise<Buffer | null> {
  if (Number(req.headers['content-length'] ?? NaN) > limit) {
    req.resume();
    return Promise.resolve(null);
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        cleanup();
        req.resume();
        resolve(null);
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    };
    const onError = (error: Error) => {
      cleanup();
      reject(error);
    };
    // The client went away before the end of its body (no 'end' will come).
    const onClose = () => onError(new Error('the request was aborted'));
    const cleanup = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
  });
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
