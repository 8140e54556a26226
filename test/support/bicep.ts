import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import Parser from 'web-tree-sitter';

/**
 * Reads Bicep files with the tree-sitter-bicep grammar (no Bicep compiler runs here) and answers the
 * questions the infra tests ask: declarations, properties, module wiring, and the value of simple
 * expressions (literals, params' defaults, vars, union/concat/string/join).
 */

export type Node = Parser.SyntaxNode;

const require = createRequire(import.meta.url);
let parser: Promise<Parser> | undefined;

function bicepParser(): Promise<Parser> {
  parser ??= (async () => {
    await Parser.init();
    const language = await Parser.Language.load(require.resolve('tree-sitter-bicep/tree-sitter-bicep.wasm'));
    const p = new Parser();
    p.setLanguage(language);
    return p;
  })();
  return parser;
}

export interface BicepFile {
  /** Absolute path. */
  path: string;
  /** Path relative to the folder the files were loaded from, for messages. */
  name: string;
  text: string;
  root: Node;
}

export async function parseBicep(text: string, path = 'inline.bicep', name = path): Promise<BicepFile> {
  const tree = (await bicepParser()).parse(text);
  return { path, name, text, root: tree.rootNode };
}

/** Every `.bicep` file under `dir`, parsed. */
export async function loadBicepFiles(dir: string): Promise<BicepFile[]> {
  const paths = readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((p) => p.endsWith('.bicep'))
    .sort();
  return Promise.all(paths.map((p) => parseBicep(readFileSync(join(dir, p), 'utf8'), resolve(dir, p), p)));
}

export interface SyntaxProblem {
  kind: 'ERROR' | 'MISSING';
  line: number;
  column: number;
  /** Where the unparseable part ends: an unclosed brace makes it run to the end of its construct. */
  endLine: number;
  /** What the parser saw there (ERROR) or expected (MISSING). */
  text: string;
}

/** The first ERROR or MISSING node in document order, 1-based line and column. */
export function firstSyntaxProblem(root: Node): SyntaxProblem | undefined {
  if (!root.hasError) return undefined;
  const visit = (node: Node): SyntaxProblem | undefined => {
    if (node.isError || node.isMissing) {
      return {
        kind: node.isMissing ? 'MISSING' : 'ERROR',
        line: node.startPosition.row + 1,
        column: node.startPosition.column + 1,
        endLine: node.endPosition.row + 1,
        text: node.isMissing ? node.type : node.text.split('\n')[0]!.slice(0, 60),
      };
    }
    for (const child of node.children) {
      if (child.hasError || child.isMissing) {
        const found = visit(child);
        if (found) return found;
      }
    }
    return undefined;
  };
  return visit(root);
}

// ---- declarations ----------------------------------------------------------------------------

/** A node's named children without comments (the grammar lets a comment appear anywhere). */
export function parts(node: Node): Node[] {
  return node.namedChildren.filter((n) => n.type !== 'comment');
}

/** The decorators written above a declaration (`@description('…')` → name `description`). */
export function decoratorsOf(decl: Node): Map<string, Node[]> {
  const found = new Map<string, Node[]>();
  let block = decl.previousNamedSibling;
  while (block?.type === 'comment') block = block.previousNamedSibling;
  if (block?.type !== 'decorators') return found;
  for (const decorator of parts(block)) {
    const call = decorator.namedChildren[0];
    if (call?.type !== 'call_expression') continue;
    const fn = call.childForFieldName('function')?.text ?? '';
    found.set(fn, call.childForFieldName('arguments')?.namedChildren ?? []);
  }
  return found;
}

export interface ParamDecl {
  name: string;
  type: string;
  /** The default value's expression, if it has one. */
  defaultValue?: Node;
  /** A nullable type (`string?`) needs no value either. */
  optional: boolean;
  description?: string;
  node: Node;
}

export function params(file: BicepFile): ParamDecl[] {
  return file.root.namedChildren
    .filter((n) => n.type === 'parameter_declaration')
    .map((node) => {
      const [id, type, value] = parts(node);
      const description = decoratorsOf(node).get('description')?.[0];
      return {
        name: id!.text,
        type: type?.text ?? '',
        defaultValue: value,
        optional: value !== undefined || (type?.text ?? '').endsWith('?'),
        description: description ? stringLiteral(description) : undefined,
        node,
      };
    });
}

export function vars(file: BicepFile): Map<string, Node> {
  const found = new Map<string, Node>();
  for (const node of file.root.namedChildren.filter((n) => n.type === 'variable_declaration')) {
    const [id, value] = parts(node);
    found.set(id!.text, value!);
  }
  return found;
}

export function outputs(file: BicepFile): Map<string, Node> {
  const found = new Map<string, Node>();
  for (const node of file.root.namedChildren.filter((n) => n.type === 'output_declaration')) {
    const [id, , value] = parts(node);
    found.set(id!.text, value!);
  }
  return found;
}

export interface ResourceDecl {
  symbol: string;
  /** Full type without API version; a nested resource's type is its parent's plus its own. */
  type: string;
  apiVersion: string;
  existing: boolean;
  /** The resource's body (inside any `if` or `for`). */
  body: Node;
  condition?: Node;
  /** The `for` loop's collection expression and item variable, for a resource loop. */
  loop?: { item: string; collection: Node };
  parent?: ResourceDecl;
  node: Node;
}

/** The object a resource or module declaration assigns, and its condition or loop. */
function declarationBody(value: Node): { body: Node; condition?: Node; loop?: { item: string; collection: Node } } {
  if (value.type === 'if_statement') {
    const [condition, body] = parts(value);
    return { body: body!, condition };
  }
  if (value.type === 'for_statement') {
    const body = value.childForFieldName('body')!;
    const item = value.childForFieldName('initializer')!;
    const collection = parts(value)
      .filter((n) => n.id !== body.id && n.id !== item.id)
      .at(-1)!;
    const inner = body.type === 'if_statement' ? declarationBody(body) : { body };
    return { ...inner, loop: { item: item.text, collection } };
  }
  return { body: value };
}

export function resources(file: BicepFile): ResourceDecl[] {
  const found: ResourceDecl[] = [];
  const collect = (container: Node, parent?: ResourceDecl) => {
    for (const child of container.namedChildren) {
      const node = child.type === 'object_property' ? child.namedChildren[0] : child;
      if (node?.type !== 'resource_declaration') continue;
      const [id, typeString] = parts(node);
      const value = parts(node).at(-1)!;
      const [typeName, apiVersion = ''] = stringLiteral(typeString!)!.split('@');
      const type = parent && !typeName!.includes('/') ? `${parent.type}/${typeName}` : typeName!;
      const decl: ResourceDecl = {
        symbol: id!.text,
        type,
        apiVersion,
        existing: node.children.some((c) => !c.isNamed && c.text === 'existing'),
        ...declarationBody(value),
        parent,
        node,
      };
      found.push(decl);
      collect(decl.body, decl);
    }
  };
  collect(file.root);
  return found;
}

export interface ModuleDecl {
  symbol: string;
  /** The path as written. */
  source: string;
  /** Absolute path of a local module, undefined for a registry reference (br:, ts:). */
  path?: string;
  body: Node;
  condition?: Node;
  node: Node;
}

export function modules(file: BicepFile): ModuleDecl[] {
  return file.root.namedChildren
    .filter((n) => n.type === 'module_declaration')
    .map((node) => {
      const [id, source] = parts(node);
      const value = parts(node).at(-1)!;
      const path = stringLiteral(source!)!;
      const local = !/^(br|ts)[:/]/.test(path);
      return {
        symbol: id!.text,
        source: path,
        path: local ? resolve(dirname(file.path), path) : undefined,
        ...declarationBody(value),
        node,
      };
    });
}

// ---- objects and expressions -----------------------------------------------------------------

/** The key of an object property (identifier or quoted string). */
function propertyKey(property: Node): string {
  const key = property.namedChildren[0]!;
  return key.type === 'string' ? (stringLiteral(key) ?? key.text) : key.text;
}

/** The properties of an object literal, in order. */
export function properties(object: Node): Map<string, Node> {
  const found = new Map<string, Node>();
  if (object.type !== 'object') return found;
  for (const property of object.namedChildren.filter((n) => n.type === 'object_property')) {
    const value = parts(property)[1];
    if (value && value.type !== 'resource_declaration') found.set(propertyKey(property), value);
  }
  return found;
}

/** The value at a dotted path of nested object literals (`properties.siteConfig.minTlsVersion`). */
export function prop(object: Node | undefined, path: string): Node | undefined {
  let current = object;
  for (const key of path.split('.')) {
    if (!current) return undefined;
    current = properties(current).get(key);
  }
  return current;
}

const ESCAPES: Record<string, string> = { "\\'": "'", '\\\\': '\\', '\\n': '\n', '\\r': '\r', '\\t': '\t', '\\$': '$' };

/** The value of a string literal without interpolation, else undefined. */
export function stringLiteral(node: Node): string | undefined {
  if (node.type !== 'string') return undefined;
  let value = '';
  for (const part of node.namedChildren) {
    if (part.type === 'string_content') value += part.text;
    else if (part.type === 'escape_sequence') value += ESCAPES[part.text] ?? part.text;
    else return undefined;
  }
  return value;
}

/** A value the evaluator cannot know offline (a resource property, an output, a runtime function). */
export const UNKNOWN = Symbol('unknown');
export type Value = string | number | boolean | null | Value[] | { [key: string]: Value } | typeof UNKNOWN;

/**
 * Evaluates what can be known without deploying: literals, a param's default, a var, and the
 * functions union, concat, string, join, empty, toLower. Anything else is UNKNOWN.
 */
export function evaluate(node: Node, file: BicepFile, seen = new Set<string>()): Value {
  switch (node.type) {
    case 'string':
      return stringLiteral(node) ?? UNKNOWN;
    case 'number':
      return Number(node.text);
    case 'boolean':
      return node.text === 'true';
    case 'null':
      return null;
    case 'array':
      return parts(node).map((n) => evaluate(n, file, seen));
    case 'object': {
      const result: Record<string, Value> = {};
      for (const [key, value] of properties(node)) result[key] = evaluate(value, file, seen);
      return result;
    }
    case 'parenthesized_expression':
      return evaluate(parts(node)[0]!, file, seen);
    case 'identifier': {
      if (seen.has(node.text)) return UNKNOWN;
      const next = new Set(seen).add(node.text);
      const variable = vars(file).get(node.text);
      if (variable) return evaluate(variable, file, next);
      const param = params(file).find((p) => p.name === node.text);
      return param?.defaultValue ? evaluate(param.defaultValue, file, next) : UNKNOWN;
    }
    case 'call_expression': {
      const fn = node.childForFieldName('function')?.text;
      const argumentList = node.childForFieldName('arguments');
      const args = argumentList ? parts(argumentList).map((a) => evaluate(a, file, seen)) : [];
      if (args.includes(UNKNOWN)) return UNKNOWN;
      if ((fn === 'union' || fn === 'concat') && args.every(Array.isArray)) {
        const items = (args as Value[][]).flat();
        return fn === 'union' ? [...new Set(items)] : items;
      }
      if (fn === 'union' && args.every((a) => typeof a === 'object' && a !== null && !Array.isArray(a)))
        return Object.assign({}, ...args) as Value;
      if (fn === 'string' && args.length === 1) return typeof args[0] === 'string' ? args[0] : JSON.stringify(args[0]);
      if (fn === 'join' && Array.isArray(args[0]) && typeof args[1] === 'string') return args[0].join(args[1]);
      if (fn === 'toLower' && typeof args[0] === 'string') return args[0].toLowerCase();
      if (fn === 'empty' && args.length === 1)
        return (
          args[0] === '' ||
          args[0] === null ||
          (Array.isArray(args[0]) && args[0].length === 0) ||
          (typeof args[0] === 'object' && args[0] !== null && Object.keys(args[0]).length === 0)
        );
      return UNKNOWN;
    }
    default:
      return UNKNOWN;
  }
}

/** `symbol.outputs.name` → { symbol, output }. */
export function outputReference(node: Node): { symbol: string; output: string } | undefined {
  if (node.type !== 'member_expression') return undefined;
  const object = node.childForFieldName('object');
  if (object?.type !== 'member_expression' || object.childForFieldName('property')?.text !== 'outputs')
    return undefined;
  const symbol = object.childForFieldName('object');
  if (symbol?.type !== 'identifier') return undefined;
  return { symbol: symbol.text, output: node.childForFieldName('property')!.text };
}

// ---- the project's infra/ -------------------------------------------------------------------

export const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const INFRA_DIR = join(PROJECT_ROOT, 'infra');

export interface Infra {
  files: BicepFile[];
  main: BicepFile;
  /** A file by its path under infra/ (`app/api.bicep`); throws naming it when it is not there. */
  file(name: string): BicepFile;
  /** The file a module declaration points at. */
  moduleFile(module: ModuleDecl): BicepFile | undefined;
  /** A module declared in main.bicep whose source is `source` (`app/api.bicep`). */
  mainModule(source: string): ModuleDecl;
}

export async function loadInfra(dir = INFRA_DIR): Promise<Infra> {
  const files = await loadBicepFiles(dir);
  const file = (name: string) => {
    const found = files.find((f) => f.name === name);
    if (!found) throw new Error(`infra/${name} does not exist`);
    return found;
  };
  const main = file('main.bicep');
  return {
    files,
    main,
    file,
    moduleFile: (module) => files.find((f) => f.path === module.path),
    mainModule: (source) => {
      const found = modules(main).find((m) => m.source === source);
      if (!found) throw new Error(`main.bicep declares no module '${source}'`);
      return found;
    },
  };
}
