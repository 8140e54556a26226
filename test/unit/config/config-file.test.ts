import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as z from 'zod';
import {
  ConfigFileError,
  fieldProblemsError,
  formatFieldPath,
  inlineProblemsError,
  parseJsonConfig,
  readJsonConfigFile,
  zodFieldProblems,
} from '../../../shared/config/config-file.js';

const dir = mkdtempSync(join(tmpdir(), 'config-file-'));
function write(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

function errorOf(run: () => unknown): ConfigFileError {
  try {
    run();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigFileError);
    return err as ConfigFileError;
  }
  throw new Error('expected a ConfigFileError');
}

const TEXT = `{
  "rules": [
    { "name": "a" },
    {
      "name": "teams-high",
      "match": { "severity": ["Critical"] }
    }
  ],
  "defaultRoute": {}
}
`;

describe('readJsonConfigFile', () => {
  it('gives the parsed value and the line of any field: a property at its key, an item at its start', () => {
    const path = write('ok.json', TEXT);
    const file = readJsonConfigFile(path, 'ROUTES_FILE');
    expect(file.path).toBe(path);
    expect(file.setting).toBe('ROUTES_FILE');
    expect(file.value).toEqual(JSON.parse(TEXT));
    expect(file.lineOf([])).toBe(1);
    expect(file.lineOf(['rules'])).toBe(2);
    expect(file.lineOf(['rules', 0])).toBe(3);
    expect(file.lineOf(['rules', 1, 'name'])).toBe(5);
    expect(file.positionOf(['rules', 1, 'match', 'severity', 0])).toEqual({ line: 6, column: 31 });
    // A field that is missing is placed at its nearest ancestor that exists.
    expect(file.lineOf(['rules', 1, 'destinations'])).toBe(4);
    expect(file.lineOf(['defaultRoute', 'destinations'])).toBe(9);
    expect(file.lineOf(['nothing', 'here'])).toBe(1);
  });

  it('names the setting to fix when the file cannot be read', () => {
    const missing = join(dir, 'typo.json');
    const error = errorOf(() => readJsonConfigFile(missing, 'ROUTES_FILE'));
    expect(error.file).toBe(missing);
    expect(error.setting).toBe('ROUTES_FILE');
    expect(error.problems).toEqual([
      {
        message: expect.stringMatching(
          /^cannot read the file \(ENOENT: it does not exist\); set ROUTES_FILE to the file's path/,
        ),
      },
    ]);
    expect(error.message).toMatch(
      new RegExp(`^ROUTES_FILE ${missing.replace(/[.\\/]/g, '\\$&')}: cannot read the file \\(ENOENT`),
    );
    expect(errorOf(() => readJsonConfigFile(dir, 'WEBHOOK_ACCESS_FILE')).message).toContain(
      '(EISDIR: it is a directory); set WEBHOOK_ACCESS_FILE',
    );
  });

  it('resolves a relative path against the working directory, as the app reads its settings', () => {
    const error = errorOf(() => readJsonConfigFile('no-such-routes.json', 'ROUTES_FILE'));
    expect(error.file).toBe(join(process.cwd(), 'no-such-routes.json'));
  });

  it.each([
    ['a missing comma', '{\n  "a": 1\n  "b": 2\n}', 3, 3, 'a comma was expected'],
    ['a trailing comma', '{\n  "a": [1, 2,],\n  "b": 2\n}', 2, 14, 'a trailing comma before ] is not allowed in JSON'],
    ['a trailing comma in an object', '{\n  "a": 1,\n}', 3, 1, 'a trailing comma before } is not allowed in JSON'],
    ['a comment', '{\n  // routes\n  "a": 1\n}', 2, 3, 'comments are not allowed in JSON'],
    ['a block comment', '{ "a": /* one */ 1 }', 1, 8, 'comments are not allowed in JSON'],
    ['single quotes', "{ 'a': 1 }", 1, 3, 'unexpected character'],
    ['an unterminated string', '{\n  "a": "b\n}', 2, 8, 'unterminated string'],
    ['a truncated file', '{ "rules": [', 1, 13, 'a closing ] was expected (the file ends here)'],
    ['two values', '{}\n{}', 2, 1, 'nothing may follow the top-level value'],
    ['an empty file', '', 1, 1, 'a value was expected (the file ends here)'],
  ])('reports %s with its line and column', (_what, text, line, column, message) => {
    const path = write('broken.json', text);
    const error = errorOf(() => readJsonConfigFile(path, 'ROUTES_FILE'));
    expect(error.problems).toEqual([{ line, column, message: `not valid JSON: ${message}` }]);
    expect(error.message).toBe(`ROUTES_FILE ${path}:${line}:${column}: not valid JSON: ${message}`);
  });

  it('refuses a key given twice in one object (JSON would silently keep the last)', () => {
    const path = write(
      'dup.json',
      '{\n  "destinations": {\n    "teams": { "type": "drop" },\n    "teams": { "type": "queue" }\n  }\n}',
    );
    const error = errorOf(() => readJsonConfigFile(path, 'ROUTES_FILE'));
    expect(error.problems).toEqual([
      {
        line: 4,
        column: 5,
        field: 'destinations.teams',
        message: 'duplicate key (also at line 3; JSON keeps only the last)',
      },
    ]);
  });

  it('reads a file saved with a byte-order mark, and counts columns as an editor does', () => {
    const path = write('bom.json', '\uFEFF{ "a": [1, 2] }');
    const file = readJsonConfigFile(path, 'ROUTES_FILE');
    expect(file.value).toEqual({ a: [1, 2] });
    expect(file.positionOf(['a'])).toEqual({ line: 1, column: 3 });
  });

  it('keeps JSON.parse semantics for the value (a "__proto__" key is plain data)', () => {
    const file = parseJsonConfig('{ "__proto__": { "polluted": true }, "a": 1 }', 'inline.json', 'ROUTES_FILE');
    expect(Object.getPrototypeOf(file.value)).toBe(Object.prototype);
    expect(Object.keys(file.value as object)).toEqual(['__proto__', 'a']);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});

describe('field problems', () => {
  it('turn into the same error, each with the line and column of its field', () => {
    const path = write('fields.json', TEXT);
    const file = readJsonConfigFile(path, 'ROUTES_FILE');
    const error = fieldProblemsError(file, [
      {
        path: ['rules', 1, 'match', 'severity', 0],
        field: 'rules[1] "teams-high": match.severity[0]',
        message: 'must be one of Informational, Low, Medium, High',
      },
      { path: ['defaultRoute', 'destinations'], message: 'is required' },
    ]);
    expect(error.file).toBe(path);
    expect(error.problems).toEqual([
      {
        line: 6,
        column: 31,
        field: 'rules[1] "teams-high": match.severity[0]',
        message: 'must be one of Informational, Low, Medium, High',
      },
      { line: 9, column: 3, field: 'defaultRoute.destinations', message: 'is required' },
    ]);
    expect(error.lines()).toEqual([
      `ROUTES_FILE ${path}:6:31: rules[1] "teams-high": match.severity[0]: must be one of Informational, Low, Medium, High`,
      `ROUTES_FILE ${path}:9:3: defaultRoute.destinations: is required`,
    ]);
    expect(error.message).toBe(error.lines().join('\n'));
  });

  it('come from a zod error with the path under a base, an unknown key placed at the key itself', () => {
    const path = write(
      'zod.json',
      '{\n  "callers": [\n    {\n      "name": "x",\n      "tenantld": "abc"\n    }\n  ]\n}',
    );
    const file = readJsonConfigFile(path, 'WEBHOOK_ACCESS_FILE');
    const schema = z.strictObject({ name: z.string(), tenantId: z.string() });
    const caller = (file.value as { callers: unknown[] }).callers[0];
    const result = schema.safeParse(caller);
    expect(result.success).toBe(false);
    const problems = zodFieldProblems(result.error!, ['callers', 0]);
    expect(fieldProblemsError(file, problems).lines().sort()).toEqual([
      `WEBHOOK_ACCESS_FILE ${path}:3:5: callers[0].tenantId: is required`,
      `WEBHOOK_ACCESS_FILE ${path}:5:7: callers[0]: unknown field "tenantld"`,
    ]);
    // A label names the field as the caller wants it named.
    expect(
      zodFieldProblems(
        result.error!,
        ['callers', 0],
        (p) => `callers[0] "x"${p.length ? `: ${formatFieldPath(p)}` : ''}`,
      )
        .map((p) => p.field)
        .sort(),
    ).toEqual(['callers[0] "x"', 'callers[0] "x": tenantId']);
  });

  it('of content that came from no file carry no line', () => {
    const error = inlineProblemsError('(inline)', [
      { path: ['rules', 0], field: 'rules[0]', message: 'must be an object' },
    ]);
    expect(error.problems).toEqual([{ field: 'rules[0]', message: 'must be an object' }]);
    expect(error.message).toBe('(inline): rules[0]: must be an object');
  });
});
