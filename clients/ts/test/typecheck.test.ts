// A wrong action name, payload, topic or use of a reply is a compile error:
// `tsc --noEmit` must fail on every file in compile-fail/, with the error
// its first line names (`// expect: TSNNNN text`), and pass on
// compile-pass/ok.ts, which makes the same calls correctly.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';

import { ROOT } from './helpers.js';

const run = promisify(execFile);
const TS_DIR = resolve(ROOT, 'clients/ts');
const TSC = resolve(ROOT, 'clients/node_modules/typescript/bin/tsc');
const FLAGS = [
  '--noEmit',
  '--strict',
  '--target', 'ES2022',
  '--module', 'NodeNext',
  '--moduleResolution', 'NodeNext',
  '--types', 'node',
  '--skipLibCheck',
];

async function tsc(...files: string[]): Promise<{ code: number; output: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [TSC, ...FLAGS, ...files], { cwd: TS_DIR, timeout: 60_000 });
    return { code: 0, output: stdout + stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof err.code === 'number' ? err.code : -1, output: `${err.stdout ?? ''}${err.stderr ?? ''}` };
  }
}

test('compile-pass/ok.ts compiles', { timeout: 60_000 }, async () => {
  const { code, output } = await tsc('compile-pass/ok.ts');
  assert.equal(code, 0, output);
});

const failing = readdirSync(resolve(TS_DIR, 'compile-fail')).filter((f) => f.endsWith('.ts')).sort();

test('clients for other manifest shapes compile', { timeout: 120_000 }, async () => {
  // Two channels, several routing keys, non-object replies, $ref, enums
  // with null, member names that are not identifiers; and one channel with
  // a single action and topic.
  const gen = process.env['SWITCHYARD_GEN_BIN'] ?? resolve(ROOT, 'target/debug/switchyard-gen');
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-gen-ts-'));
  try {
    const manifest = resolve(ROOT, 'clients/fixtures/kitchen-sink.manifest.json');
    await run(gen, ['--manifest', manifest, '--ts', join(dir, 'sink.ts')], { timeout: 60_000 });
    await run(gen, ['--manifest', manifest, '--channel', 'admin', '--ts', join(dir, 'admin.ts')], { timeout: 60_000 });
    for (const f of ['sink.ts', 'admin.ts']) {
      const { code, output } = await tsc(join(dir, f));
      assert.equal(code, 0, `${f}:\n${output}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('there are compile-fail cases', () => {
  assert.ok(failing.length >= 10, failing.join(', '));
});

// One tsc run over every compile-fail file (each is its own module, so
// tsc reports each file's errors under its own name): tsc must exit
// non-zero, and each file must have exactly one error, the one its first
// line names.
test('tsc rejects every compile-fail file with the error it names', { timeout: 180_000 }, async (t) => {
  const { code: exit, output } = await tsc(...failing.map((f) => `compile-fail/${f}`));
  assert.notEqual(exit, 0, `tsc accepted the compile-fail files:\n${output}`);
  const errors = [...output.matchAll(/^compile-fail\/([^(]+)\(\d+,\d+\): error (TS\d+): ([^\n]*(?:\n {2}[^\n]*)*)/gm)];
  const stray = output.split('\n').filter((l) => /error TS\d+:/.test(l) && !l.startsWith('compile-fail/'));
  assert.deepEqual(stray, [], `errors outside compile-fail/:\n${output}`);
  for (const file of failing) {
    await t.test(`compile-fail/${file}`, () => {
      const first = readFileSync(resolve(TS_DIR, 'compile-fail', file), 'utf8').split('\n')[0] ?? '';
      const m = /^\/\/ expect: (TS\d+) (.+)$/.exec(first);
      assert.ok(m, `${file} must start with '// expect: TSNNNN message'`);
      const [, code, text] = m;
      const mine = errors.filter((e) => e[1] === file);
      assert.equal(mine.length, 1, `expected exactly one error in ${file}:\n${output}`);
      const [, , gotCode, message] = mine[0]!;
      assert.equal(gotCode, code, `${file}: ${message}`);
      assert.ok(message!.includes(text!), `${file}: expected "${text}" in: ${message}`);
    });
  }
});
