// docs/glossary.md is one word per concept: the phrases its "Not" column lists appear nowhere in app/, jobs/ or the
// README (the simulators speak the processors' words; camelCase wire names are not phrases and are not matched).
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { projectRoot } from '../app/db/migrate';

const root = projectRoot();

/** The phrases of the glossary's last column ("—" and the parenthesised notes are not phrases). */
export function forbiddenPhrases(glossary: string): string[] {
  const phrases: string[] = [];
  for (const line of glossary.split('\n')) {
    if (!line.startsWith('| ') || line.startsWith('| Word') || line.startsWith('|---')) continue;
    const cells = line.split(' | ');
    const last = cells[cells.length - 1]!.replace(/\s*\|\s*$/, '').replace(/\(.*\)/, '').trim();
    for (const p of last.split(',')) if (p.trim() && p.trim() !== '—') phrases.push(p.trim().toLowerCase());
  }
  return phrases;
}

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    if (name === 'node_modules' || name === 'generated') return [];
    if (statSync(full).isDirectory()) return files(full);
    return /\.(ts|tsx|md)$/.test(name) ? [full] : [];
  });
}

describe('the glossary', () => {
  const glossary = readFileSync(path.join(root, 'docs/glossary.md'), 'utf8');
  const phrases = forbiddenPhrases(glossary);

  it('lists the phrases it forbids', () => {
    expect(phrases).toContain('billing window');
    expect(phrases).toContain('billing period');
    expect(phrases.every((p) => p.includes(' '))).toBe(true);
  });

  it('no file of app/, jobs/ or the README uses a word the glossary replaced', () => {
    const scanned = [...files(path.join(root, 'app')), ...files(path.join(root, 'jobs')), path.join(root, 'README.md')];
    expect(scanned.length).toBeGreaterThan(100);
    const hits: string[] = [];
    for (const file of scanned) {
      const lines = readFileSync(file, 'utf8').split('\n');
      lines.forEach((text, i) => {
        const lower = text.toLowerCase();
        for (const p of phrases) if (new RegExp(`\\b${p}\\b`).test(lower)) hits.push(`${path.relative(root, file)}:${i + 1}: "${p}"`);
      });
    }
    expect(hits).toEqual([]);
  });

  it('catches a planted synonym', () => {
    const planted = 'const label = "Billing window";'.toLowerCase();
    expect(phrases.some((p) => new RegExp(`\\b${p}\\b`).test(planted))).toBe(true);
    // A phrase inside a longer word is not the phrase: "usage recorded" is not "usage record".
    expect(phrases.some((p) => new RegExp(`\\b${p}\\b`).test('no usage recorded.'))).toBe(false);
  });
});
