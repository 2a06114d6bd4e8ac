// The house's import graph, read from the sources with TypeScript's own parser (every `import`, `import type`,
// `export ... from`, dynamic `import()` and `import('x').T` type): relative specifiers resolved to files, bare ones
// kept as package names.
import fs from 'node:fs';
import path from 'node:path';
import ts from 'typescript';

export interface ImportGraph {
  /** Project-relative file -> project-relative files it imports. */
  files: Map<string, Set<string>>;
  /** Project-relative file -> package names it imports ('react', '@react-router/node', 'node:fs'). */
  packages: Map<string, Set<string>>;
}

const EXTENSIONS = ['.ts', '.tsx'];

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      if (entry.name === 'node_modules' || entry.name === 'generated' || entry.name.startsWith('.')) continue;
      out.push(...sourceFiles(full));
    } else if (EXTENSIONS.some((e) => entry.name.endsWith(e)) && !entry.name.endsWith('.d.ts')) out.push(full);
  }
  return out;
}

function resolve(from: string, specifier: string): string | null {
  const base = path.resolve(path.dirname(from), specifier);
  for (const candidate of [base, ...EXTENSIONS.map((e) => base + e), ...EXTENSIONS.map((e) => path.join(base, 'index' + e))]) {
    if (fs.existsSync(candidate) && fs.statSync(candidate).isFile()) return candidate;
  }
  return null;
}

function moduleSpecifiers(file: string): string[] {
  const source = ts.createSourceFile(file, fs.readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, false, file.endsWith('.tsx') ? ts.ScriptKind.TSX : ts.ScriptKind.TS);
  const out: string[] = [];
  const visit = (node: ts.Node) => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      out.push(node.moduleSpecifier.text);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword && node.arguments[0] && ts.isStringLiteralLike(node.arguments[0])) {
      out.push(node.arguments[0].text);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
      out.push(node.argument.literal.text);
    } else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference) && ts.isStringLiteral(node.moduleReference.expression)) {
      out.push(node.moduleReference.expression.text);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return out;
}

function packageName(specifier: string): string {
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!;
}

/** Reads every .ts/.tsx file under `dirs` (relative to `root`), tests included unless `skipTests`. */
export function readImportGraph(root: string, dirs: readonly string[], opts: { skipTests?: boolean } = {}): ImportGraph {
  const graph: ImportGraph = { files: new Map(), packages: new Map() };
  const rel = (file: string) => path.relative(root, file).split(path.sep).join('/');
  for (const dir of dirs) {
    if (!fs.existsSync(path.join(root, dir))) continue;
    for (const file of sourceFiles(path.join(root, dir))) {
      if (opts.skipTests && /\.test\.tsx?$/.test(file)) continue;
      const files = new Set<string>();
      const packages = new Set<string>();
      for (const specifier of moduleSpecifiers(file)) {
        if (specifier.startsWith('.')) {
          // React Router's generated route types (`./+types/<route>`) live under .react-router/types.
          if (specifier.includes('/+types/')) continue;
          const target = resolve(file, specifier);
          if (!target) throw new Error(`${rel(file)}: cannot resolve import '${specifier}'`);
          if (!/generated\//.test(rel(target))) files.add(rel(target));
        } else packages.add(packageName(specifier));
      }
      graph.files.set(rel(file), files);
      graph.packages.set(rel(file), packages);
    }
  }
  return graph;
}

/** Every import circle (Tarjan's strongly connected components of more than one file, or a file importing itself). */
export function findCycles(graph: ImportGraph): string[][] {
  let index = 0;
  const indices = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[][] = [];
  const visit = (v: string) => {
    indices.set(v, index);
    low.set(v, index++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.files.get(v) ?? []) {
      if (!graph.files.has(w)) continue;
      if (!indices.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, indices.get(w)!));
    }
    if (low.get(v) === indices.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1 || graph.files.get(v)?.has(v)) cycles.push(component.sort());
    }
  };
  for (const v of [...graph.files.keys()].sort()) if (!indices.has(v)) visit(v);
  return cycles;
}

export interface RoomRule {
  /** Files under this folder (project-relative, e.g. 'app/db/')... */
  room: string;
  /** ...must not import files under these folders... */
  mustNotImport?: readonly string[];
  /** ...nor these packages. */
  mustNotImportPackages?: readonly string[];
}

/** Every import that breaks a rule, as `from -> to (rule)`. */
export function upwardArrows(graph: ImportGraph, rules: readonly RoomRule[]): string[] {
  const out: string[] = [];
  for (const [from, targets] of graph.files) {
    for (const rule of rules) {
      if (!from.startsWith(rule.room)) continue;
      for (const to of targets) {
        const banned = rule.mustNotImport?.find((r) => to.startsWith(r));
        if (banned && !to.startsWith(rule.room)) out.push(`${from} -> ${to} (${rule.room} must not import ${banned})`);
      }
      for (const pkg of graph.packages.get(from) ?? []) {
        if (rule.mustNotImportPackages?.includes(pkg)) out.push(`${from} -> ${pkg} (${rule.room} must not import ${pkg})`);
      }
    }
  }
  return out.sort();
}

const SQL_KEYWORD = /\b(SELECT|INSERT|UPDATE|DELETE)\s/;

/**
 * Every string literal or template text under `dirs` that reads as SQL (an upper-case SELECT, INSERT, UPDATE or DELETE
 * followed by a space), as `file:line: text`. Prose on a page says "select", never "SELECT ".
 */
export function sqlInStringLiterals(root: string, dirs: readonly string[]): string[] {
  const out: string[] = [];
  for (const dir of dirs) {
    if (!fs.existsSync(path.join(root, dir))) continue;
    for (const file of sourceFiles(path.join(root, dir))) {
      const text = fs.readFileSync(file, 'utf8');
      const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, file.endsWith('.tsx') ? ts.ScriptKind.TSX : ts.ScriptKind.TS);
      const visit = (node: ts.Node) => {
        if (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node) || ts.isTemplateHead(node) || ts.isTemplateMiddle(node) || ts.isTemplateTail(node)) {
          const match = SQL_KEYWORD.exec(node.text);
          if (match) {
            const line = source.getLineAndCharacterOfPosition(node.getStart(source)).line + 1;
            out.push(`${path.relative(root, file).split(path.sep).join('/')}:${line}: ${node.text.trim().split('\n')[0]!.slice(0, 80)}`);
          }
        }
        ts.forEachChild(node, visit);
      };
      visit(source);
    }
  }
  return out.sort();
}
