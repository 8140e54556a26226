import { parseTimestamp } from './timestamps.js';
import { INCIDENT_STATUSES, type Incident } from './types.js';

/**
 * The `$filter` subset `GET /api/incidents` documents: `lastUpdateTime` and `createdTime` with
 * gt/ge/lt/le against unquoted DateTimeOffset literals, `status` and `assignedTo` with eq against
 * quoted strings, clauses joined by `and` (parentheses allowed). Anything else is refused with a
 * message saying what is wrong, as the real service answers 400 InvalidInput.
 */

export type TimeField = 'lastUpdateTime' | 'createdTime';
export type TimeOperator = 'gt' | 'ge' | 'lt' | 'le';

export type FilterClause =
  | { field: TimeField; operator: TimeOperator; ticks: bigint }
  | { field: 'status' | 'assignedTo'; operator: 'eq'; value: string | null };

export class FilterSyntaxError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FilterSyntaxError';
  }
}

type Token =
  | { kind: 'word'; text: string; position: number }
  | { kind: 'string'; text: string; position: number }
  | { kind: 'datetime'; text: string; position: number }
  | { kind: 'open' | 'close'; text: string; position: number };

const TIME_FIELDS: readonly string[] = ['lastUpdateTime', 'createdTime'];
const STRING_FIELDS: readonly string[] = ['status', 'assignedTo'];
const TIME_OPERATORS: readonly string[] = ['gt', 'ge', 'lt', 'le'];
const KNOWN_OPERATORS = ['eq', 'ne', 'gt', 'ge', 'lt', 'le'];

export function tokenizeFilter(text: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const ch = text[i] as string;
    if (/\s/.test(ch)) {
      i += 1;
    } else if (ch === '(' || ch === ')') {
      tokens.push({ kind: ch === '(' ? 'open' : 'close', text: ch, position: i });
      i += 1;
    } else if (ch === "'") {
      const start = i;
      let value = '';
      i += 1;
      for (;;) {
        if (i >= text.length) throw new FilterSyntaxError(`Unterminated string literal starting at position ${start}.`);
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
    } else if (/\d/.test(ch)) {
      const match = /^\d{4}-\d{2}-\d{2}(?:T[0-9:.]+(?:Z|[+-]\d{2}:\d{2})?)?/.exec(text.slice(i));
      if (!match)
        throw new FilterSyntaxError(
          `Unexpected literal at position ${i}: expected a date-time such as 2020-09-06T14:46:57.0733333Z.`,
        );
      tokens.push({ kind: 'datetime', text: match[0], position: i });
      i += match[0].length;
    } else if (/[A-Za-z_]/.test(ch)) {
      const match = /^[A-Za-z_][A-Za-z0-9_]*/.exec(text.slice(i)) as RegExpExecArray;
      tokens.push({ kind: 'word', text: match[0], position: i });
      i += match[0].length;
    } else {
      throw new FilterSyntaxError(`Unexpected character '${ch}' at position ${i}.`);
    }
  }
  return tokens;
}

export function parseIncidentFilter(text: string): FilterClause[] {
  const tokens = tokenizeFilter(text);
  if (tokens.length === 0) throw new FilterSyntaxError('The $filter expression is empty.');
  let index = 0;

  const peek = (): Token | undefined => tokens[index];
  const next = (expected: string): Token => {
    const token = tokens[index];
    if (!token) throw new FilterSyntaxError(`The $filter expression ended early: expected ${expected}.`);
    index += 1;
    return token;
  };

  const parseConjunction = (): FilterClause[] => {
    const clauses = parseTerm();
    for (let token = peek(); token && token.kind === 'word'; token = peek()) {
      if (token.text === 'or')
        throw new FilterSyntaxError(
          `'or' at position ${token.position} is not supported: only 'and' combines clauses.`,
        );
      if (token.text !== 'and')
        throw new FilterSyntaxError(`Expected 'and' at position ${token.position}, found '${token.text}'.`);
      index += 1;
      clauses.push(...parseTerm());
    }
    return clauses;
  };

  const parseTerm = (): FilterClause[] => {
    const token = next('a comparison such as lastUpdateTime ge 2020-09-06T14:46:57Z');
    if (token.kind === 'open') {
      const inner = parseConjunction();
      const close = next("')'");
      if (close.kind !== 'close')
        throw new FilterSyntaxError(`Expected ')' at position ${close.position}, found '${close.text}'.`);
      return inner;
    }
    if (token.kind !== 'word')
      throw new FilterSyntaxError(`Expected a property name at position ${token.position}, found '${token.text}'.`);
    if (token.text === 'not') throw new FilterSyntaxError(`'not' at position ${token.position} is not supported.`);
    return [parseComparison(token)];
  };

  const parseComparison = (property: Token): FilterClause => {
    const field = property.text;
    if (!TIME_FIELDS.includes(field) && !STRING_FIELDS.includes(field)) {
      throw new FilterSyntaxError(
        `Property '${field}' at position ${property.position} cannot be filtered on: use lastUpdateTime, createdTime, status or assignedTo.`,
      );
    }
    const operatorToken = next(`an operator after '${field}'`);
    const operator = operatorToken.text;
    if (operatorToken.kind !== 'word' || !KNOWN_OPERATORS.includes(operator)) {
      throw new FilterSyntaxError(
        `Expected an operator (eq, gt, ge, lt, le) after '${field}' at position ${operatorToken.position}, found '${operator}'.`,
      );
    }
    const literal = next(`a value after '${field} ${operator}'`);
    if (TIME_FIELDS.includes(field)) {
      if (!TIME_OPERATORS.includes(operator)) {
        throw new FilterSyntaxError(`Operator '${operator}' is not supported on ${field}: use gt, ge, lt or le.`);
      }
      if (literal.kind !== 'datetime') {
        throw new FilterSyntaxError(
          `${field} is compared with an unquoted DateTimeOffset such as 2020-09-06T14:46:57.0733333Z; found '${literal.text}' at position ${literal.position}.`,
        );
      }
      const ticks = parseTimestamp(literal.text);
      if (ticks === undefined) {
        throw new FilterSyntaxError(
          `'${literal.text}' at position ${literal.position} is not a valid DateTimeOffset (ISO 8601 with Z or an offset, up to 7 fractional digits).`,
        );
      }
      return { field: field as TimeField, operator: operator as TimeOperator, ticks };
    }
    if (operator !== 'eq') throw new FilterSyntaxError(`Operator '${operator}' is not supported on ${field}: use eq.`);
    if (literal.kind === 'word' && literal.text === 'null')
      return { field: field as 'status' | 'assignedTo', operator: 'eq', value: null };
    if (literal.kind !== 'string') {
      throw new FilterSyntaxError(
        `${field} is compared with a quoted string such as '${field === 'status' ? 'Active' : 'user@contoso.com'}'; found '${literal.text}' at position ${literal.position}.`,
      );
    }
    if (field === 'status' && !(INCIDENT_STATUSES as readonly string[]).includes(literal.text)) {
      throw new FilterSyntaxError(
        `'${literal.text}' is not an incident status: use one of ${INCIDENT_STATUSES.join(', ')}.`,
      );
    }
    return { field: field as 'status' | 'assignedTo', operator: 'eq', value: literal.text };
  };

  const clauses = parseConjunction();
  const rest = peek();
  if (rest) throw new FilterSyntaxError(`Unexpected '${rest.text}' at position ${rest.position}.`);
  return clauses;
}

type FilterableIncident = Pick<Incident, 'lastUpdateTime' | 'createdTime' | 'status' | 'assignedTo'>;

export function matchesFilter(incident: FilterableIncident, clauses: readonly FilterClause[]): boolean {
  return clauses.every((clause) => {
    if (clause.field === 'status' || clause.field === 'assignedTo')
      return (incident[clause.field] ?? null) === clause.value;
    const ticks = parseTimestamp(String(incident[clause.field]));
    if (ticks === undefined) return false;
    switch (clause.operator) {
      case 'gt':
        return ticks > clause.ticks;
      case 'ge':
        return ticks >= clause.ticks;
      case 'lt':
        return ticks < clause.ticks;
      case 'le':
        return ticks <= clause.ticks;
    }
  });
}
