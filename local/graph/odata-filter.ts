import { parseTimestamp } from '../defender/timestamps.js';
import {
  ALERT_CLASSIFICATIONS,
  ALERT_DETERMINATIONS,
  ALERT_SEVERITIES,
  INCIDENT_PROPERTIES,
  INCIDENT_STATUSES,
  type GraphIncident,
} from './types.js';

/**
 * `$filter` on `GET /security/incidents`: the properties the list page names as filterable (assignedTo,
 * classification, createdDateTime, determination, lastUpdateDateTime, severity, status:
 * microsoftgraph/microsoft-graph-docs-contrib api-reference/v1.0/api/security-list-incidents.md, "Optional
 * query parameters"), OData's comparison operators (eq, ne, gt, ge, lt, le), `in`, `and`, `or`, `not` and
 * parentheses. Operands are typed as the v1.0 schema types them: DateTimeOffset literals unquoted and with a
 * zone, enum members as quoted strings naming a member exactly, assignedTo a string or null. What the
 * service's OData stack would refuse is refused with its reason (ODataLib's URI parser, ASP.NET Core OData's
 * validator: OData/AspNetCoreOData SRResources.resx), bounded as its validator bounds it (`MaxNodeCount` 100,
 * the parser's recursion limit 800), so no input can make the stand-in work hard or fail.
 */

export class FilterError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FilterError';
  }
}

const ENTITY_TYPE = 'microsoft.graph.security.incident';
/** ODataValidationSettings.MaxNodeCount's default. */
export const MAX_NODE_COUNT = 100;
/** ODataUriParserSettings' default filter recursion limit. */
const MAX_DEPTH = 800;

type EdmType =
  | 'Edm.DateTimeOffset'
  | 'Edm.String'
  | 'Edm.Date'
  | 'Edm.Int32'
  | 'Edm.Double'
  | 'Edm.Boolean'
  | 'null'
  | `microsoft.graph.security.${string}`;

interface PropertyInfo {
  type: EdmType;
  members?: readonly string[];
}

/** The filterable properties and their types (v1.0 schema). */
const FILTERABLE: Record<string, PropertyInfo> = {
  assignedTo: { type: 'Edm.String' },
  classification: { type: 'microsoft.graph.security.alertClassification', members: ALERT_CLASSIFICATIONS },
  createdDateTime: { type: 'Edm.DateTimeOffset' },
  determination: { type: 'microsoft.graph.security.alertDetermination', members: ALERT_DETERMINATIONS },
  lastUpdateDateTime: { type: 'Edm.DateTimeOffset' },
  severity: { type: 'microsoft.graph.security.alertSeverity', members: ALERT_SEVERITIES },
  status: { type: 'microsoft.graph.security.incidentStatus', members: INCIDENT_STATUSES },
};
export type FilterableProperty = keyof typeof FILTERABLE;

const KNOWN_PROPERTIES: readonly string[] = [...INCIDENT_PROPERTIES, 'alerts'];

export type ComparisonOperator = 'eq' | 'ne' | 'gt' | 'ge' | 'lt' | 'le';
const OPERATOR_KINDS: Record<ComparisonOperator, string> = {
  eq: 'Equal',
  ne: 'NotEqual',
  gt: 'GreaterThan',
  ge: 'GreaterThanOrEqual',
  lt: 'LessThan',
  le: 'LessThanOrEqual',
};
const MIRRORED: Record<ComparisonOperator, ComparisonOperator> = {
  eq: 'eq',
  ne: 'ne',
  gt: 'lt',
  ge: 'le',
  lt: 'gt',
  le: 'ge',
};

/** An enum-typed operand carries its enum's members: values compare by their place among them. */
export type Operand =
  | { kind: 'property'; name: FilterableProperty; type: EdmType; members?: readonly string[] }
  | { kind: 'literal'; type: EdmType; value: string | number | boolean | bigint | null; members?: readonly string[] };

export type FilterNode =
  | { kind: 'and' | 'or'; left: FilterNode; right: FilterNode }
  | { kind: 'not'; operand: FilterNode }
  | { kind: 'compare'; operator: ComparisonOperator; left: Operand; right: Operand }
  | { kind: 'in'; operand: Operand; values: Operand[] }
  | { kind: 'constant'; value: boolean };

type Token =
  | { kind: 'word'; text: string; position: number }
  | { kind: 'string'; text: string; position: number }
  | { kind: 'datetime' | 'date' | 'number'; text: string; position: number }
  | { kind: 'open' | 'close' | 'comma'; text: string; position: number };

const syntaxError = (position: number, text: string) =>
  new FilterError(`Syntax error at position ${position} in '${text}'.`);

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const ch = text[i] as string;
    if (ch === ' ' || ch === '\t' || ch === '\n' || ch === '\r') {
      i += 1;
    } else if (ch === '(' || ch === ')' || ch === ',') {
      tokens.push({ kind: ch === '(' ? 'open' : ch === ')' ? 'close' : 'comma', text: ch, position: i });
      i += 1;
    } else if (ch === "'") {
      const start = i;
      let value = '';
      i += 1;
      for (;;) {
        if (i >= text.length)
          throw new FilterError(`There is an unterminated string literal at position ${start} in '${text}'.`);
        if (text[i] === "'") {
          // OData escapes a quote inside a string by doubling it.
          if (text[i + 1] === "'") {
            value += "'";
            i += 2;
            continue;
          }
          i += 1;
          break;
        }
        value += text[i];
        i += 1;
      }
      tokens.push({ kind: 'string', text: value, position: start });
    } else if (ch >= '0' && ch <= '9') {
      const rest = text.slice(i, i + 64);
      const dateTime = /^\d{4}-\d{2}-\d{2}T[0-9:.]+(?:Z|[+-]\d{2}:\d{2})?/.exec(rest);
      const date = /^\d{4}-\d{2}-\d{2}/.exec(rest);
      const number = /^\d+(?:\.\d+)?/.exec(rest) as RegExpExecArray;
      const [kind, match] = dateTime
        ? (['datetime', dateTime[0]] as const)
        : date
          ? (['date', date[0]] as const)
          : (['number', number[0]] as const);
      tokens.push({ kind, text: match, position: i });
      i += match.length;
    } else if (/[A-Za-z_]/.test(ch)) {
      const match = /^[A-Za-z_][A-Za-z0-9_.]*/.exec(text.slice(i, i + 256)) as RegExpExecArray;
      tokens.push({ kind: 'word', text: match[0], position: i });
      i += match[0].length;
    } else {
      throw syntaxError(i, text);
    }
  }
  return tokens;
}

const KEYWORDS = new Set(['and', 'or', 'not', 'eq', 'ne', 'gt', 'ge', 'lt', 'le', 'in', 'has']);
const isComparison = (token: Token | undefined): boolean => token?.kind === 'word' && token.text in OPERATOR_KINDS;

type Parsed = { node: FilterNode } | { operand: Operand; position: number };

export function parseFilter(text: string): FilterNode {
  if (text.trim() === '') throw new FilterError(`Expression expected at position 0 in '${text}'.`);
  const tokens = tokenize(text);
  let index = 0;
  let nodes = 0;
  let depth = 0;

  const count = (n: number) => {
    nodes += n;
    if (nodes > MAX_NODE_COUNT)
      throw new FilterError(
        `The node count limit of '${MAX_NODE_COUNT}' has been exceeded. To increase the limit, set the 'MaxNodeCount' property on EnableQueryAttribute or ODataValidationSettings.`,
      );
  };
  const deeper = () => {
    depth += 1;
    if (depth > MAX_DEPTH) throw new FilterError('The recursion limit has been exceeded.');
  };
  const peek = (): Token | undefined => tokens[index];
  const atEnd = () => text.length;
  const typeOf = (parsed: Parsed): EdmType => ('node' in parsed ? 'Edm.Boolean' : parsed.operand.type);
  const asBoolean = (parsed: Parsed, operatorKind: string, other: Parsed): FilterNode => {
    if ('node' in parsed) return parsed.node;
    if (parsed.operand.kind === 'literal' && parsed.operand.type === 'Edm.Boolean')
      return { kind: 'constant', value: parsed.operand.value as boolean };
    throw new FilterError(
      `A binary operator with incompatible types was detected. Found operand types '${typeOf(parsed)}' and '${typeOf(other)}' for operator kind '${operatorKind}'.`,
    );
  };

  const parseOr = (): Parsed => {
    let left = parseAnd();
    while (peek()?.kind === 'word' && peek()?.text === 'or') {
      index += 1;
      const right = parseAnd();
      count(1);
      left = { node: { kind: 'or', left: asBoolean(left, 'Or', right), right: asBoolean(right, 'Or', left) } };
    }
    return left;
  };

  const parseAnd = (): Parsed => {
    let left = parseUnary();
    while (peek()?.kind === 'word' && peek()?.text === 'and') {
      index += 1;
      const right = parseUnary();
      count(1);
      left = { node: { kind: 'and', left: asBoolean(left, 'And', right), right: asBoolean(right, 'And', left) } };
    }
    return left;
  };

  const parseUnary = (): Parsed => {
    const token = peek();
    if (token?.kind === 'word' && token.text === 'not') {
      index += 1;
      deeper();
      const operand = parseUnary();
      depth -= 1;
      count(1);
      if (!('node' in operand))
        throw new FilterError(
          `The operand for a unary not operator is of type '${operand.operand.type}', but it must be of type 'Edm.Boolean'.`,
        );
      return { node: { kind: 'not', operand: operand.node } };
    }
    return parseComparison();
  };

  const parseComparison = (): Parsed => {
    const left = parsePrimary();
    const next = peek();
    if (next && isComparison(next)) {
      index += 1;
      const right = parsePrimary();
      count(1);
      return { node: compare(next.text as ComparisonOperator, left, right) };
    }
    if (next?.kind === 'word' && next.text === 'in') {
      index += 1;
      const open = peek();
      if (open?.kind !== 'open') throw syntaxError(open?.position ?? atEnd(), text);
      index += 1;
      const values: Parsed[] = [];
      for (;;) {
        values.push(parsePrimary());
        const separator = peek();
        index += 1;
        if (separator?.kind === 'close') break;
        if (separator?.kind !== 'comma') throw syntaxError(separator?.position ?? atEnd(), text);
      }
      count(2);
      return { node: inList(left, values) };
    }
    return left;
  };

  const parsePrimary = (): Parsed => {
    const token = peek();
    if (!token) throw new FilterError(`Expression expected at position ${atEnd()} in '${text}'.`);
    index += 1;
    switch (token.kind) {
      case 'open': {
        deeper();
        const inner = parseOr();
        depth -= 1;
        const close = peek();
        if (close?.kind !== 'close')
          throw new FilterError(`')' or operator expected at position ${close?.position ?? atEnd()} in '${text}'.`);
        index += 1;
        return inner;
      }
      case 'string':
        count(1);
        return { operand: { kind: 'literal', type: 'Edm.String', value: token.text }, position: token.position };
      case 'datetime': {
        const ticks = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,7})?)?(?:Z|[+-]\d{2}:\d{2})$/.test(token.text)
          ? parseTimestamp(token.text)
          : undefined;
        if (ticks === undefined)
          throw new FilterError(
            `Unrecognized 'Edm.DateTimeOffset' literal '${token.text}' at '${token.position}' in '${text}'.`,
          );
        count(1);
        return { operand: { kind: 'literal', type: 'Edm.DateTimeOffset', value: ticks }, position: token.position };
      }
      case 'date':
        if (parseTimestamp(token.text) === undefined)
          throw new FilterError(`Unrecognized 'Edm.Date' literal '${token.text}' at '${token.position}' in '${text}'.`);
        count(1);
        return { operand: { kind: 'literal', type: 'Edm.Date', value: token.text }, position: token.position };
      case 'number':
        count(1);
        return {
          operand: {
            kind: 'literal',
            type: token.text.includes('.') ? 'Edm.Double' : 'Edm.Int32',
            value: Number(token.text),
          },
          position: token.position,
        };
      case 'word':
        return word(token);
      default:
        throw new FilterError(`Expression expected at position ${token.position} in '${text}'.`);
    }
  };

  const word = (token: Token & { kind: 'word' }): Parsed => {
    const name = token.text;
    if (name === 'null' || name === 'true' || name === 'false') {
      count(1);
      return {
        operand:
          name === 'null'
            ? { kind: 'literal', type: 'null', value: null }
            : { kind: 'literal', type: 'Edm.Boolean', value: name === 'true' },
        position: token.position,
      };
    }
    if (peek()?.kind === 'open')
      throw new FilterError(
        `Function '${name}' is not allowed. To allow it, set the 'AllowedFunctions' property on EnableQueryAttribute or QueryValidationSettings.`,
      );
    if (KEYWORDS.has(name)) throw new FilterError(`Expression expected at position ${token.position} in '${text}'.`);
    if (!KNOWN_PROPERTIES.includes(name))
      throw new FilterError(`Could not find a property named '${name}' on type '${ENTITY_TYPE}'.`);
    const info = FILTERABLE[name];
    if (!info) throw new FilterError(`The property '${name}' cannot be used in the $filter query option.`);
    count(1);
    return {
      operand: { kind: 'property', name: name as FilterableProperty, type: info.type, members: info.members },
      position: token.position,
    };
  };

  const incompatible = (left: EdmType, right: EdmType, kind: string) =>
    new FilterError(
      `A binary operator with incompatible types was detected. Found operand types '${left}' and '${right}' for operator kind '${kind}'.`,
    );

  /** Two operands of one comparison must have one type; a string literal against an enum must name a member. */
  const unify = (left: Operand, right: Operand, kind: string): [Operand, Operand] => {
    const convert = (property: Operand, literal: Operand): Operand => {
      if (literal.kind !== 'literal' || literal.type !== 'Edm.String' || property.kind !== 'property') return literal;
      const members = FILTERABLE[property.name]?.members;
      if (!members) return literal;
      if (!members.includes(literal.value as string))
        throw new FilterError(`The string '${String(literal.value)}' is not a valid enumeration type constant.`);
      return { kind: 'literal', type: property.type, value: literal.value, members };
    };
    const l = convert(right, left);
    const r = convert(left, right);
    if (l.type !== r.type && l.type !== 'null' && r.type !== 'null') throw incompatible(l.type, r.type, kind);
    return [l, r];
  };

  const compare = (operator: ComparisonOperator, left: Parsed, right: Parsed): FilterNode => {
    const kind = OPERATOR_KINDS[operator];
    if ('node' in left || 'node' in right) throw incompatible(typeOf(left), typeOf(right), kind);
    const [l, r] = unify(left.operand, right.operand, kind);
    // A literal on the left is the same comparison mirrored: 'x' eq p is p eq 'x', 2020-… lt p is p gt 2020-….
    if (l.kind === 'literal' && r.kind === 'property')
      return { kind: 'compare', operator: MIRRORED[operator], left: r, right: l };
    return { kind: 'compare', operator, left: l, right: r };
  };

  const inList = (left: Parsed, values: Parsed[]): FilterNode => {
    if ('node' in left) throw incompatible('Edm.Boolean', 'Edm.String', 'In');
    const operands = values.map((value) => {
      if ('node' in value) throw incompatible(left.operand.type, 'Edm.Boolean', 'In');
      return unify(left.operand, value.operand, 'In')[1];
    });
    return { kind: 'in', operand: left.operand, values: operands };
  };

  const result = parseOr();
  const rest = peek();
  if (rest) throw syntaxError(rest.position, text);
  if (!('node' in result)) {
    if (result.operand.kind === 'literal' && result.operand.type === 'Edm.Boolean')
      return { kind: 'constant', value: result.operand.value as boolean };
    throw new FilterError('The $filter expression must evaluate to a single boolean value.');
  }
  return result.node;
}

type Comparable = bigint | number | string | null;

function valueOf(operand: Operand, incident: GraphIncident): Comparable {
  if (operand.kind === 'literal') {
    if (typeof operand.value === 'boolean') return operand.value ? 1 : 0;
    return operand.value;
  }
  const raw = (incident as unknown as Record<string, unknown>)[operand.name] as string | null | undefined;
  if (raw === null || raw === undefined) return null;
  if (operand.type === 'Edm.DateTimeOffset') return parseTimestamp(raw) ?? null;
  return raw;
}

/** Enum members compare by their place in the enum (OData compares their values), strings ordinally. */
function rank(operand: Operand, value: Comparable): Comparable {
  return typeof value === 'string' && operand.members ? operand.members.indexOf(value) : value;
}

function compareValues(operator: ComparisonOperator, left: Comparable, right: Comparable): boolean {
  if (left === null || right === null) {
    if (operator === 'eq') return left === right;
    if (operator === 'ne') return left !== right;
    return false;
  }
  switch (operator) {
    case 'eq':
      return left === right;
    case 'ne':
      return left !== right;
    case 'gt':
      return left > right;
    case 'ge':
      return left >= right;
    case 'lt':
      return left < right;
    case 'le':
      return left <= right;
  }
}

export function matchesFilter(incident: GraphIncident, node: FilterNode | undefined): boolean {
  if (!node) return true;
  switch (node.kind) {
    case 'constant':
      return node.value;
    case 'and':
      return matchesFilter(incident, node.left) && matchesFilter(incident, node.right);
    case 'or':
      return matchesFilter(incident, node.left) || matchesFilter(incident, node.right);
    case 'not':
      return !matchesFilter(incident, node.operand);
    case 'compare':
      return compareValues(
        node.operator,
        rank(node.left, valueOf(node.left, incident)),
        rank(node.right, valueOf(node.right, incident)),
      );
    case 'in': {
      const value = valueOf(node.operand, incident);
      return node.values.some((candidate) => compareValues('eq', value, valueOf(candidate, incident)));
    }
  }
}
