import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { findNodeAtLocation, parseTree, printParseErrorCode, type Node, type ParseError } from 'jsonc-parser';
import type { z } from 'zod';

/**
 * Reading a JSON configuration file (the routing rules, the webhook access file, …) so that every
 * problem names the setting that points at the file, the file, the line and column, and the field:
 *
 *   ROUTES_FILE /home/site/wwwroot/routes.json:12:5: rules[2] "teams-high": match.severity[0]: must be one of …
 *
 * Strict JSON: comments, trailing commas and duplicate keys are errors (a duplicate key would
 * otherwise silently drop the first value). Syntax errors come from `jsonc-parser` with offsets;
 * the value itself is `JSON.parse`'s, so it is exactly what any JSON reader gets.
 */

/** A path to a field: property names and array indexes, as zod reports them. */
export type FieldPath = readonly (string | number)[];

export interface ConfigFileProblem {
  /** 1-based; absent when the problem is about the whole file (it cannot be read). */
  line?: number;
  /** 1-based. */
  column?: number;
  /** How the problem names the field (`rules[2] "teams-high": match.severity[0]`); absent for file-level problems. */
  field?: string;
  message: string;
}

/** A field-level validation problem, before its line is known: `path` locates it, `field` is how to name it. */
export interface FieldProblem {
  path: FieldPath;
  /** Defaults to the formatted path (`rules[2].match.severity[0]`). */
  field?: string;
  message: string;
}

export interface JsonConfigFile {
  /** Absolute. */
  path: string;
  /** The app setting that names the file (ROUTES_FILE): what to fix when the file is the wrong one. */
  setting: string;
  /** The parsed content (`JSON.parse`). */
  value: unknown;
  /** 1-based line of the field (of its key, for a property), or of its nearest ancestor that exists. */
  lineOf(fieldPath: FieldPath): number | undefined;
  /** Line and column of the field, as `lineOf`. */
  positionOf(fieldPath: FieldPath): { line: number; column: number } | undefined;
}

export function formatFieldPath(path: FieldPath): string {
  return path.reduce<string>(
    (text, key) => (typeof key === 'number' ? `${text}[${key}]` : text ? `${text}.${key}` : key),
    '',
  );
}

/** One problem as one line: `SETTING /abs/file.json:12:5: field: message`. */
export function formatConfigFileProblem(file: string, problem: ConfigFileProblem, setting?: string): string {
  const where =
    problem.line === undefined
      ? file
      : `${file}:${problem.line}${problem.column === undefined ? '' : `:${problem.column}`}`;
  return `${setting ? `${setting} ` : ''}${where}: ${problem.field ? `${problem.field}: ` : ''}${problem.message}`;
}

/** A configuration file that cannot be used; the message holds one line per problem, each naming file, line and field. */
export class ConfigFileError extends Error {
  constructor(
    readonly file: string,
    readonly problems: ConfigFileProblem[],
    /** The app setting that names the file (absent for content that did not come from a file). */
    readonly setting?: string,
  ) {
    super(
      problems.map((p) => formatConfigFileProblem(file, p, setting)).join('\n') ||
        formatConfigFileProblem(file, { message: 'invalid' }, setting),
    );
    this.name = 'ConfigFileError';
  }

  /** Each problem as its own line (what the message holds). */
  lines(): string[] {
    return this.problems.map((p) => formatConfigFileProblem(this.file, p, this.setting));
  }
}

const SYNTAX_MESSAGES: Record<string, string> = {
  InvalidSymbol: 'unexpected character',
  InvalidNumberFormat: 'invalid number',
  PropertyNameExpected: 'a property name in double quotes was expected',
  ValueExpected: 'a value was expected',
  ColonExpected: 'a colon was expected',
  CommaExpected: 'a comma was expected',
  CloseBraceExpected: 'a closing } was expected',
  CloseBracketExpected: 'a closing ] was expected',
  EndOfFileExpected: 'nothing may follow the top-level value',
  InvalidCommentToken: 'comments are not allowed in JSON',
  UnexpectedEndOfComment: 'comments are not allowed in JSON',
  UnexpectedEndOfString: 'unterminated string',
  UnexpectedEndOfNumber: 'incomplete number',
  InvalidUnicode: 'invalid \\u escape',
  InvalidEscapeCharacter: 'invalid escape sequence',
  InvalidCharacter: 'a control character (a raw tab or line break?) inside a string',
};

/** Maps offsets in `text` to 1-based line and column. */
function positions(text: string): (offset: number) => { line: number; column: number } {
  const starts = [0];
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) === 10) starts.push(i + 1);
  return (offset) => {
    let low = 0;
    let high = starts.length - 1;
    while (low < high) {
      const mid = (low + high + 1) >> 1;
      if (starts[mid]! <= offset) low = mid;
      else high = mid - 1;
    }
    return { line: low + 1, column: offset - starts[low]! + 1 };
  };
}

function syntaxProblem(
  text: string,
  error: ParseError,
  at: (offset: number) => { line: number; column: number },
): ConfigFileProblem {
  const code = printParseErrorCode(error.error);
  let message = SYNTAX_MESSAGES[code] ?? code;
  const found = text.slice(error.offset, error.offset + Math.max(error.length, 1));
  if ((found === '}' || found === ']') && /,\s*$/.test(text.slice(0, error.offset)))
    message = `a trailing comma before ${found} is not allowed in JSON`;
  else if (error.offset >= text.length) message = `${message} (the file ends here)`;
  return { ...at(error.offset), message: `not valid JSON: ${message}` };
}

/** Keys given twice in one object: JSON.parse keeps the last and drops the first without a word. */
function duplicateKeys(root: Node, at: (offset: number) => { line: number; column: number }): ConfigFileProblem[] {
  const problems: ConfigFileProblem[] = [];
  const visit = (node: Node, path: (string | number)[]) => {
    if (node.type === 'object') {
      const seen = new Map<string, number>();
      for (const property of node.children ?? []) {
        const [key, value] = property.children ?? [];
        if (!key || typeof key.value !== 'string') continue;
        const name = key.value;
        const first = seen.get(name);
        if (first !== undefined)
          problems.push({
            ...at(key.offset),
            field: formatFieldPath([...path, name]),
            message: `duplicate key (also at line ${at(first).line}; JSON keeps only the last)`,
          });
        else seen.set(name, key.offset);
        if (value) visit(value, [...path, name]);
      }
    } else if (node.type === 'array') {
      (node.children ?? []).forEach((child, index) => visit(child, [...path, index]));
    }
  };
  visit(root, []);
  return problems;
}

/**
 * Parses JSON text as a configuration file; throws `ConfigFileError` with the line and column of a
 * syntax error. `path` is used for messages only (resolved to an absolute path).
 */
export function parseJsonConfig(text: string, path: string, setting: string): JsonConfigFile {
  const file = resolve(path);
  // A byte-order mark (Windows editors) is not content; editors do not count it as a column either.
  const body = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  const at = positions(body);
  const errors: ParseError[] = [];
  let root: Node | undefined;
  try {
    root = parseTree(body, errors, { disallowComments: true, allowTrailingComma: false, allowEmptyContent: false });
  } catch (err) {
    throw new ConfigFileError(file, [{ message: `could not be parsed: ${(err as Error).message}` }], setting);
  }
  // The first syntax error: the ones after it are mostly its echoes.
  if (errors.length > 0) throw new ConfigFileError(file, [syntaxProblem(body, errors[0]!, at)], setting);
  if (!root)
    throw new ConfigFileError(file, [{ line: 1, column: 1, message: 'not valid JSON: the file is empty' }], setting);
  let value: unknown;
  try {
    value = JSON.parse(body) as unknown;
  } catch (err) {
    throw new ConfigFileError(file, [{ message: `not valid JSON: ${(err as Error).message}` }], setting);
  }
  const duplicates = duplicateKeys(root, at);
  if (duplicates.length > 0) throw new ConfigFileError(file, duplicates, setting);

  const positionOf = (fieldPath: FieldPath): { line: number; column: number } | undefined => {
    for (let depth = fieldPath.length; depth >= 0; depth--) {
      const node = findNodeAtLocation(root, fieldPath.slice(0, depth) as (string | number)[]);
      if (!node) continue;
      // A property's key is where a reader looks for it.
      const located = node.parent?.type === 'property' ? node.parent : node;
      return at(located.offset);
    }
    return undefined;
  };
  return { path: file, setting, value, positionOf, lineOf: (fieldPath) => positionOf(fieldPath)?.line };
}

/**
 * Reads and parses a JSON configuration file. An unreadable file names the setting to fix
 * (`ROUTES_FILE /abs/routes.json: cannot read the file (ENOENT: it does not exist); set ROUTES_FILE to …`).
 */
export function readJsonConfigFile(path: string, setting: string): JsonConfigFile {
  const file = resolve(path);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigFileError(
      file,
      [
        {
          message: `cannot read the file (${describeReadError(err)}); set ${setting} to the file's path (absolute, or relative to the app's directory)`,
        },
      ],
      setting,
    );
  }
  return parseJsonConfig(text, file, setting);
}

function describeReadError(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  const meaning: Record<string, string> = {
    ENOENT: 'it does not exist',
    EISDIR: 'it is a directory',
    EACCES: 'permission denied',
    EPERM: 'permission denied',
    ENOTDIR: 'a part of the path is not a directory',
  };
  if (code && meaning[code]) return `${code}: ${meaning[code]}`;
  return code ?? (err instanceof Error ? err.message : String(err));
}

/** Field-level problems as a `ConfigFileError`, each with the line and column of its field in `file`. */
export function fieldProblemsError(file: JsonConfigFile, problems: readonly FieldProblem[]): ConfigFileError {
  return new ConfigFileError(
    file.path,
    problems.map((p) => locate(p, file)),
    file.setting,
  );
}

/** The same, for content that did not come from a file (no line to give). */
export function inlineProblemsError(source: string, problems: readonly FieldProblem[]): ConfigFileError {
  return new ConfigFileError(
    source,
    problems.map((p) => locate(p)),
  );
}

function locate(problem: FieldProblem, file?: JsonConfigFile): ConfigFileProblem {
  const field = problem.field ?? (formatFieldPath(problem.path) || undefined);
  return { ...file?.positionOf(problem.path), ...(field !== undefined && { field }), message: problem.message };
}

/**
 * A zod validation error as field problems, with `base` prepended to each path (and `label` naming
 * the field, when given: `label(path)` → `rules[2] "teams-high": match.severity[0]`). An unknown
 * key points at the key itself.
 */
export function zodFieldProblems(
  error: z.ZodError,
  base: FieldPath = [],
  label?: (path: FieldPath) => string,
): FieldProblem[] {
  return error.issues.map((issue) => {
    const path = issue.path.map((key) => (typeof key === 'number' ? key : String(key)));
    const unknownKeys = issue.code === 'unrecognized_keys' ? issue.keys : [];
    const message =
      issue.code === 'unrecognized_keys'
        ? `unknown field${unknownKeys.length > 1 ? 's' : ''} ${unknownKeys.map((k) => `"${k}"`).join(', ')}`
        : issue.code === 'invalid_type' && issue.message.endsWith('received undefined')
          ? 'is required'
          : issue.message;
    const located = unknownKeys.length > 0 ? [...base, ...path, unknownKeys[0]!] : [...base, ...path];
    return { path: located, field: label ? label(path) : formatFieldPath([...base, ...path]) || undefined, message };
  });
}
