// Runs a processor's own mocha-style spec file, read from ../shared/reference/peer-suites/ at run time (never copied):
// its `describe`/`it`/hooks are collected in a sandbox whose `require` answers from a map the harness gives (the SDK
// under test, shims for the peer repository's own test helpers), then each case runs and its outcome is recorded.
// TypeScript specs are stripped of their types by Node itself (module.stripTypeScriptTypes) and their static
// `import ... from` lines become `require` calls; nothing else in the file is changed.
import { readFileSync } from 'node:fs';
import { stripTypeScriptTypes } from 'node:module';
import { compileFunction } from 'node:vm';

type Fn = (this: TestContext, done?: (err?: unknown) => void) => unknown;

interface Suite {
  title: string;
  parent: Suite | undefined;
  beforeAll: Fn[];
  beforeEach: Fn[];
  afterEach: Fn[];
  afterAll: Fn[];
}

export interface PeerCase {
  /** Titles from the outermost describe to the it, joined with ' > '. */
  id: string;
  suite: Suite;
  fn: Fn | undefined;
}

export interface PeerOutcome {
  id: string;
  status: 'passed' | 'failed' | 'pending';
  error?: string;
  durationMs: number;
}

interface TestContext {
  timeout(ms?: number): TestContext;
  slow(ms?: number): TestContext;
  retries(n?: number): TestContext;
  skip(): never;
}

class Skipped extends Error {}

/** Turns `import {a, b as c} from 'x';` and `import x from 'y';` into require calls (the only ESM the specs use). */
function importsToRequires(source: string): string {
  return source
    .replace(/^import\s+\{([^}]*)\}\s+from\s+(['"][^'"]+['"]);?/gm, (_m, names: string, from: string) => `const {${names.replace(/\bas\b/g, ':')}} = require(${from});`)
    .replace(/^import\s+\*\s+as\s+(\w+)\s+from\s+(['"][^'"]+['"]);?/gm, 'const $1 = require($2);')
    .replace(/^import\s+(\w+)\s+from\s+(['"][^'"]+['"]);?/gm, 'const $1 = (m => m && m.__esModule ? m.default : m)(require($2));');
}

/**
 * Collects the cases of one spec file. `modules` answers the spec's `require(specifier)` calls, by exact specifier;
 * anything else throws with the specifier named, so a peer file that starts needing a new helper fails loudly.
 */
export function collectPeerSpec(file: string, modules: Record<string, unknown>): PeerCase[] {
  let source = readFileSync(file, 'utf8');
  if (file.endsWith('.ts')) source = stripTypeScriptTypes(source, { mode: 'strip' });
  source = importsToRequires(source);
  const root: Suite = { title: '', parent: undefined, beforeAll: [], beforeEach: [], afterEach: [], afterAll: [] };
  const cases: PeerCase[] = [];
  let current = root;
  const titles = (s: Suite): string[] => (s.parent ? [...titles(s.parent), s.title] : []);
  const describe = (title: string, fn: () => void) => {
    const suite: Suite = { title, parent: current, beforeAll: [], beforeEach: [], afterEach: [], afterAll: [] };
    current = suite;
    try {
      fn();
    } finally {
      current = suite.parent!;
    }
  };
  const it = (title: string, fn?: Fn) => cases.push({ id: [...titles(current), title].join(' > '), suite: current, fn });
  const hook = (kind: 'beforeAll' | 'beforeEach' | 'afterEach' | 'afterAll') => (fn: Fn) => current[kind].push(fn);
  const requireFn = (specifier: string): unknown => {
    if (!(specifier in modules)) throw new Error(`peer spec ${file} requires '${specifier}', which the harness does not provide`);
    return modules[specifier];
  };
  const run = compileFunction(source, ['require', 'describe', 'it', 'context', 'before', 'beforeEach', 'afterEach', 'after', 'module', 'exports'], { filename: file });
  const module = { exports: {} };
  run(requireFn, describe, it, describe, hook('beforeAll'), hook('beforeEach'), hook('afterEach'), hook('afterAll'), module, module.exports);
  return cases;
}

const context: TestContext = {
  timeout() {
    return context;
  },
  slow() {
    return context;
  },
  retries() {
    return context;
  },
  skip() {
    throw new Skipped('skipped by the spec');
  },
};

async function call(fn: Fn, timeoutMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    const result =
      fn.length > 0
        ? new Promise<void>((resolve, reject) => {
            fn.call(context, (err?: unknown) => (err ? reject(err) : resolve()));
          })
        : Promise.resolve(fn.call(context));
    await Promise.race([result, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function chain(suite: Suite | undefined): Suite[] {
  const out: Suite[] = [];
  for (let s = suite; s; s = s.parent) out.unshift(s);
  return out;
}

/**
 * Runs the chosen cases in file order with mocha's hook semantics (before/after once per suite around its chosen
 * cases, beforeEach/afterEach around each case, outermost first). `around` wraps each case (the harness arranges the
 * simulator for it and checks what came back).
 */
export async function runPeerCases(
  cases: readonly PeerCase[],
  opts: { timeoutMs?: number; around?: (c: PeerCase, body: () => Promise<void>) => Promise<void> } = {},
): Promise<PeerOutcome[]> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const outcomes: PeerOutcome[] = [];
  const started = new Set<Suite>();
  const remaining = new Map<Suite, number>();
  for (const c of cases) for (const s of chain(c.suite)) remaining.set(s, (remaining.get(s) ?? 0) + 1);
  for (const c of cases) {
    const suites = chain(c.suite);
    const t0 = performance.now();
    try {
      for (const s of suites) {
        if (started.has(s)) continue;
        started.add(s);
        for (const h of s.beforeAll) await call(h, timeoutMs);
      }
      if (!c.fn) {
        outcomes.push({ id: c.id, status: 'pending', durationMs: 0 });
      } else {
        const body = async () => {
          for (const s of suites) for (const h of s.beforeEach) await call(h, timeoutMs);
          try {
            await call(c.fn!, timeoutMs);
          } finally {
            for (const s of [...suites].reverse()) for (const h of s.afterEach) await call(h, timeoutMs);
          }
        };
        await (opts.around ? opts.around(c, body) : body());
        outcomes.push({ id: c.id, status: 'passed', durationMs: performance.now() - t0 });
      }
    } catch (err) {
      if (err instanceof Skipped) outcomes.push({ id: c.id, status: 'pending', durationMs: 0 });
      else outcomes.push({ id: c.id, status: 'failed', error: describeError(err), durationMs: performance.now() - t0 });
    }
    for (const s of [...suites].reverse()) {
      const left = (remaining.get(s) ?? 1) - 1;
      remaining.set(s, left);
      if (left === 0) for (const h of s.afterAll) await call(h, timeoutMs).catch(() => undefined);
    }
  }
  return outcomes;
}

function describeError(err: unknown): string {
  if (err instanceof Error) return `${err.name}: ${err.message}`.split('\n').slice(0, 3).join(' ').slice(0, 400);
  return String(err).slice(0, 400);
}
