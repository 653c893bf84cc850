/**
 * The folders depend one way: lib/ at the bottom, then proto/ and serving/ (the server), fleet/ (operating the serving
 * tier from outside), activities/, and workflows/ on top (which may import activities as types only, enforced by
 * ESLint). cli/, worker/, bench/ and tests/ sit above all of them. This test reads every import (static, dynamic,
 * type-only and require) and fails naming the file and the import that goes the wrong way.
 */
import fs from 'node:fs';
import path from 'node:path';
import ts from 'typescript';

const ROOT = path.resolve(__dirname, '..', '..');

/** Folder → the folders its code may import from (besides itself). */
const ALLOWED: Record<string, string[]> = {
  lib: [],
  proto: [],
  serving: ['lib', 'proto'],
  fleet: ['lib', 'proto', 'serving'],
  cluster: ['lib'],
  activities: ['lib', 'proto', 'serving', 'fleet', 'cluster'],
  workflows: ['lib', 'activities'],
  worker: ['lib', 'activities', 'workflows'],
};

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(p);
    return e.name.endsWith('.ts') ? [p] : [];
  });
}

function importsOf(file: string): string[] {
  const info = ts.preProcessFile(fs.readFileSync(file, 'utf8'), true, true);
  return info.importedFiles.map((f) => f.fileName).filter((s) => s.startsWith('.'));
}

const topFolder = (abs: string) => path.relative(ROOT, abs).split(path.sep)[0]!;

describe('import direction', () => {
  for (const [folder, allowed] of Object.entries(ALLOWED)) {
    it(`${folder}/ imports only from ${allowed.length ? allowed.join(', ') : 'itself'}`, () => {
      const wrong: string[] = [];
      for (const file of sourceFiles(path.join(ROOT, folder)))
        for (const spec of importsOf(file)) {
          const target = topFolder(path.resolve(path.dirname(file), spec));
          if (target !== folder && !allowed.includes(target))
            wrong.push(`${path.relative(ROOT, file)} imports '${spec}' (${target}/)`);
        }
      expect(wrong).toEqual([]);
    });
  }

  it('sees imports of every kind', () => {
    const specs = ts
      .preProcessFile(
        "import a from '../x/a';\nimport type { B } from '../y/b';\nexport * from '../z/c';\n" +
          "const d = require('../w/d');\nvoid import('../v/e');",
        true,
        true,
      )
      .importedFiles.map((f) => f.fileName);
    expect(specs).toEqual(['../x/a', '../y/b', '../z/c', '../w/d', '../v/e']);
  });
});
