// The house's shape: no import circle anywhere, no arrow from a lower room up (app/db is the foundation, app/billing
// the domain: plain TypeScript with no React, router, web, worker or seed imports), and graphile-worker's schema named
// by one module only (ADR 022). Desk reads live in app/presenters (ADR 024): a presenter takes a database and returns
// view data, importing the domain, app/db and app/utils' non-React helpers, never a route, a component or React; route
// modules hold no SQL. The scanner itself is shown to catch a planted circle, upward arrow, presenter import and SQL.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, expectTypeOf, it } from 'vitest';
import { projectRoot } from '../app/db/migrate';
import type { loader as deskLoader } from '../app/routes/_desk';
import type { DeskUser } from '../app/utils/permissions';
import { findCycles, readImportGraph, sqlInStringLiterals, upwardArrows, type ImportGraph, type RoomRule } from './support/import-graph';

const root = projectRoot();
const DIRS = ['app', 'jobs', 'simulators', 'bench', 'chaos', 'test', 'scripts'];
const ABOVE_THE_DOMAIN = ['app/presenters/', 'app/routes/', 'app/components/', 'app/server/', 'app/cli/', 'app/api/', 'app/utils/', 'app/root.tsx', 'app/routes.ts', 'jobs/', 'simulators/', 'test/', 'bench/', 'chaos/'];
const REACT_PACKAGES = ['react', 'react-dom', 'react-router', '@react-router/node', '@react-router/serve', '@react-router/dev'];
const RULES: RoomRule[] = [
  { room: 'app/db/', mustNotImport: ['app/billing/', 'app/seed/', ...ABOVE_THE_DOMAIN] },
  {
    room: 'app/billing/',
    mustNotImport: ['app/seed/', ...ABOVE_THE_DOMAIN],
    // graphile-worker only through app/db/graphile-jobs.ts.
    mustNotImportPackages: [...REACT_PACKAGES, 'graphile-worker'],
  },
  { room: 'app/seed/', mustNotImport: ABOVE_THE_DOMAIN },
  { room: 'jobs/', mustNotImport: ['app/routes/', 'app/components/', 'app/utils/', 'app/root.tsx'] },
];

/**
 * Presenters sit between the routes and the domain: app/billing, app/db and app/utils are below them, but not the
 * app/utils modules that import React or the router (sessions, flash, CSRF read the request context).
 */
function presenterRule(graph: ImportGraph): RoomRule {
  const reactUtils = [...graph.packages].filter(([f, pkgs]) => f.startsWith('app/utils/') && REACT_PACKAGES.some((p) => pkgs.has(p))).map(([f]) => f);
  return {
    room: 'app/presenters/',
    mustNotImport: ['app/routes/', 'app/components/', 'app/server/', 'app/cli/', 'app/api/', 'app/seed/', 'app/root.tsx', 'app/routes.ts', 'jobs/', 'simulators/', 'test/', 'bench/', 'chaos/', ...reactUtils],
    mustNotImportPackages: [...REACT_PACKAGES, 'graphile-worker'],
  };
}

describe('the import graph', () => {
  it('has no circle, type-only imports included', () => {
    const graph = readImportGraph(root, DIRS);
    expect(graph.files.size).toBeGreaterThan(200);
    expect(findCycles(graph)).toEqual([]);
  });

  it('has no arrow from a lower room up (production code)', () => {
    const graph = readImportGraph(root, DIRS, { skipTests: true });
    expect(graph.files.has('app/db/prepare.ts')).toBe(true);
    expect(upwardArrows(graph, RULES)).toEqual([]);
  });

  it('keeps presenters below the routes: no route, component, React or request-bound app/utils import', () => {
    const graph = readImportGraph(root, DIRS, { skipTests: true });
    expect([...graph.files.keys()].filter((f) => f.startsWith('app/presenters/')).length).toBeGreaterThanOrEqual(4);
    expect(upwardArrows(graph, [presenterRule(graph)])).toEqual([]);
  });

  it('has no SQL in route modules (desk reads are presenters, changes are domain functions)', () => {
    expect(sqlInStringLiterals(root, ['app/routes'])).toEqual([]);
  });

  it("names graphile-worker's schema in one module only (app/db/graphile-jobs.ts)", () => {
    const graph = readImportGraph(root, ['app', 'jobs', 'simulators', 'bench', 'chaos'], { skipTests: true });
    const naming = [...graph.files.keys()].filter((f) => /graphile_worker\s*\.|_private_(jobs|tasks|job_queues)/.test(fs.readFileSync(path.join(root, f), 'utf8')));
    expect(naming).toEqual(['app/db/graphile-jobs.ts']);
  });

  it("keeps useDeskUser's view of the desk layout's data true to its loader (a type check; no import back)", () => {
    type LoaderUser = Awaited<ReturnType<typeof deskLoader>>['user'];
    expectTypeOf<LoaderUser>().toEqualTypeOf<DeskUser>();
  });
});

describe('the scanner', () => {
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'meterdesk-import-graph-'));
  afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));
  const write = (file: string, text: string) => {
    fs.mkdirSync(path.dirname(path.join(scratch, file)), { recursive: true });
    fs.writeFileSync(path.join(scratch, file), text);
  };

  it('reports a circle made of a type-only import and a dynamic import, and an arrow from app/db up', () => {
    write('app/db/clients.ts', `import type { Plan } from '../billing/plans';\nexport const x = 1;\n`);
    write('app/billing/plans.ts', `export interface Plan { id: string }\nexport const load = () => import('./ledger');\n`);
    write('app/billing/ledger.ts', `export type { Plan } from './plans';\nimport { x } from '../db/clients';\nexport const y = x;\n`);
    write('app/billing/page.tsx', `import { useState } from 'react';\nexport const z = useState;\n`);
    write('app/billing/fine.ts', `import { x } from '../db/clients';\nexport const w = x;\n`);
    const graph = readImportGraph(scratch, ['app']);
    expect(findCycles(graph)).toEqual([['app/billing/ledger.ts', 'app/billing/plans.ts', 'app/db/clients.ts']]);
    expect(upwardArrows(graph, RULES)).toEqual([
      'app/billing/page.tsx -> react (app/billing/ must not import react)',
      'app/db/clients.ts -> app/billing/plans.ts (app/db/ must not import app/billing/)',
    ]);
  });

  it('reports a presenter importing a route, React or a request-bound app/utils module, and SQL in a route', () => {
    write('app/utils/session.server.ts', `import type { RouterContextProvider } from 'react-router';\nexport type C = RouterContextProvider;\n`);
    write('app/utils/money.ts', `export const m = 1;\n`);
    write('app/routes/_desk.things.tsx', `import { m } from '../utils/money';\nexport const q = \`SELECT id FROM things WHERE n = \${m}\`;\nexport const label = 'Select a thing';\n`);
    write('app/presenters/things.ts', `import { q } from '../routes/_desk.things';\nimport type { C } from '../utils/session.server';\nimport { m } from '../utils/money';\nimport { useState } from 'react';\nexport const t = [q, m, useState] as const;\nexport type T = C;\n`);
    const graph = readImportGraph(scratch, ['app']);
    expect(upwardArrows(graph, [presenterRule(graph)])).toEqual([
      'app/presenters/things.ts -> app/routes/_desk.things.tsx (app/presenters/ must not import app/routes/)',
      'app/presenters/things.ts -> app/utils/session.server.ts (app/presenters/ must not import app/utils/session.server.ts)',
      'app/presenters/things.ts -> react (app/presenters/ must not import react)',
    ]);
    expect(sqlInStringLiterals(scratch, ['app/routes'])).toEqual(['app/routes/_desk.things.tsx:2: SELECT id FROM things WHERE n =']);
  });

  it('fails on an import it cannot resolve rather than skipping it', () => {
    write('lost/a.ts', `import { gone } from './nowhere';\nexport const a = gone;\n`);
    expect(() => readImportGraph(scratch, ['lost'])).toThrow(/lost\/a\.ts: cannot resolve import '\.\/nowhere'/);
  });
});
