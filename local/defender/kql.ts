import { parseTimestamp, msFromTicks } from './timestamps.js';
import type { ColumnType, HuntingTable, Row } from './hunting-tables.js';

/**
 * The KQL subset the stand-in runs: `Table`, `| where <cond> [and <cond>…]` with ==, !=, =~, >,
 * >=, <, <=, contains, has, in (…) against strings, numbers, `ago(7d)` or `datetime(…)`,
 * `| take N` / `| limit N`, `| project a, b`. Anything else is a KqlError (400 BadRequest),
 * never a silently wrong answer.
 */
export class KqlError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KqlError';
  }
}

type Literal = string | number;
type Comparison = '==' | '!=' | '=~' | '>' | '>=' | '<' | '<=' | 'contains' | 'has';
type Condition =
  { column: string; operator: Comparison; value: Literal } | { column: string; operator: 'in'; values: Literal[] };
type Operation =
  { kind: 'where'; conditions: Condition[] } | { kind: 'take'; count: number } | { kind: 'project'; columns: string[] };

export interface KqlQuery {
  table: string;
  operations: Operation[];
}

type Token = {
  kind: 'ident' | 'string' | 'number' | 'timespan' | 'datetime' | 'symbol';
  text: string;
  position: number;
};

const TIMESPAN_MS: Record<string, number> = { d: 86_400_000, h: 3_600_000, m: 60_000, s: 1000, ms: 1 };

function tokenize(query: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < query.length) {
    const rest = query.slice(i);
    const ch = query[i] as string;
    if (/\s/.test(ch)) {
      i += 1;
      continue;
    }
    if (rest.startsWith('//')) {
      const end = query.indexOf('\n', i);
      i = end === -1 ? query.length : end;
      continue;
    }
    if (ch === '"' || ch === "'") {
      let value = '';
      let j = i + 1;
      while (j < query.length && query[j] !== ch) {
        if (query[j] === '\\' && j + 1 < query.length) j += 1;
        value += query[j];
        j += 1;
      }
      if (j >= query.length)
        throw new KqlError(`Query could not be parsed: unterminated string starting at position ${i}.`);
      tokens.push({ kind: 'string', text: value, position: i });
      i = j + 1;
      continue;
    }
    // datetime(2024-01-31T00:00:00Z) holds characters no other token allows, so it is read whole.
    const datetime = /^datetime\(\s*([^)]*?)\s*\)/.exec(rest);
    if (datetime) {
      tokens.push({ kind: 'datetime', text: datetime[1] as string, position: i });
      i += datetime[0].length;
      continue;
    }
    const number = /^\d+(?:\.\d+)?(ms|d|h|m|s)?\b/.exec(rest);
    if (number) {
      tokens.push({ kind: number[1] ? 'timespan' : 'number', text: number[0], position: i });
      i += number[0].length;
      continue;
    }
    const ident = /^[A-Za-z_][A-Za-z0-9_]*/.exec(rest);
    if (ident) {
      tokens.push({ kind: 'ident', text: ident[0], position: i });
      i += ident[0].length;
      continue;
    }
    const symbol = /^(==|!=|=~|>=|<=|[|(),<>])/.exec(rest);
    if (symbol) {
      tokens.push({ kind: 'symbol', text: symbol[0], position: i });
      i += symbol[0].length;
      continue;
    }
    throw new KqlError(`Query could not be parsed: unexpected character '${ch}' at position ${i}.`);
  }
  return tokens;
}

export function parseKql(query: string, now: number): KqlQuery {
  const tokens = tokenize(query);
  let index = 0;
  const peek = () => tokens[index];
  const next = (expected: string): Token => {
    const token = tokens[index];
    if (!token) throw new KqlError(`Query could not be parsed: expected ${expected} at the end of the query.`);
    index += 1;
    return token;
  };
  const expectSymbol = (symbol: string) => {
    const token = next(`'${symbol}'`);
    if (token.kind !== 'symbol' || token.text !== symbol)
      throw new KqlError(
        `Query could not be parsed: expected '${symbol}' at position ${token.position}, found '${token.text}'.`,
      );
  };

  const parseLiteral = (): Literal => {
    const token = next('a value');
    if (token.kind === 'string') return token.text;
    if (token.kind === 'number') return Number(token.text);
    if (token.kind === 'datetime') {
      const raw = /T/.test(token.text) && !/(Z|[+-]\d{2}:\d{2})$/.test(token.text) ? `${token.text}Z` : token.text;
      const ticks = parseTimestamp(raw);
      if (ticks === undefined)
        throw new KqlError(`datetime() expects an ISO date such as 2024-01-31T00:00:00Z; found '${token.text}'.`);
      return new Date(msFromTicks(ticks)).toISOString();
    }
    if (token.kind === 'ident' && token.text === 'ago') {
      expectSymbol('(');
      const argument = next('the argument of ago()');
      const span = /^(\d+(?:\.\d+)?)(ms|d|h|m|s)$/.exec(argument.text);
      if (argument.kind !== 'timespan' || !span)
        throw new KqlError(`ago() expects a timespan such as 7d or 12h; found '${argument.text}'.`);
      expectSymbol(')');
      return new Date(now - Number(span[1]) * (TIMESPAN_MS[span[2] as string] as number)).toISOString();
    }
    throw new KqlError(
      `Query could not be parsed: expected a value at position ${token.position}, found '${token.text}'.`,
    );
  };

  const parseCondition = (): Condition => {
    const column = next('a column name');
    if (column.kind !== 'ident')
      throw new KqlError(
        `Query could not be parsed: expected a column name at position ${column.position}, found '${column.text}'.`,
      );
    const operator = next(`an operator after '${column.text}'`);
    if (operator.text === 'in' && operator.kind === 'ident') {
      expectSymbol('(');
      const values = [parseLiteral()];
      while (peek()?.text === ',') {
        index += 1;
        values.push(parseLiteral());
      }
      expectSymbol(')');
      return { column: column.text, operator: 'in', values };
    }
    const comparisons = ['==', '!=', '=~', '>', '>=', '<', '<=', 'contains', 'has'];
    if (!comparisons.includes(operator.text)) {
      throw new KqlError(
        `Query could not be parsed: '${operator.text}' at position ${operator.position} is not a supported operator (${comparisons.join(', ')}, in).`,
      );
    }
    return { column: column.text, operator: operator.text as Comparison, value: parseLiteral() };
  };

  const parseOperation = (): Operation => {
    const keyword = next('a query operator after |');
    switch (keyword.kind === 'ident' ? keyword.text : '') {
      case 'where': {
        const conditions = [parseCondition()];
        while (peek()?.kind === 'ident' && peek()?.text === 'and') {
          index += 1;
          conditions.push(parseCondition());
        }
        return { kind: 'where', conditions };
      }
      case 'take':
      case 'limit': {
        const count = next('a row count');
        if (count.kind !== 'number' || !Number.isInteger(Number(count.text)))
          throw new KqlError(`'${keyword.text}' expects a whole number of rows; found '${count.text}'.`);
        return { kind: 'take', count: Number(count.text) };
      }
      case 'project': {
        const columns = [];
        do {
          const column = next('a column name');
          if (column.kind !== 'ident')
            throw new KqlError(
              `Query could not be parsed: expected a column name at position ${column.position}, found '${column.text}'.`,
            );
          columns.push(column.text);
        } while (peek()?.text === ',' && (index += 1));
        return { kind: 'project', columns };
      }
      default:
        throw new KqlError(
          `Query operator '${keyword.text}' at position ${keyword.position} is not supported here (supported: where, take, limit, project).`,
        );
    }
  };

  const table = next('a table name');
  if (table.kind !== 'ident')
    throw new KqlError(
      `Query could not be parsed: expected a table name at position ${table.position}, found '${table.text}'.`,
    );
  const operations: Operation[] = [];
  while (peek()) {
    expectSymbol('|');
    operations.push(parseOperation());
  }
  return { table: table.text, operations };
}

/** Runs the parsed query over one table; unknown columns fail as the real service fails. */
export function runKql(query: KqlQuery, table: HuntingTable): HuntingTable {
  let schema = table.schema;
  let rows: Row[] = table.rows;
  const typeOf = (column: string): ColumnType => {
    const found = schema.find((c) => c.Name === column);
    if (!found) throw new KqlError(`Failed to resolve scalar expression named '${column}'.`);
    return found.Type;
  };
  for (const operation of query.operations) {
    if (operation.kind === 'where') {
      const checks = operation.conditions.map((condition) => ({ condition, type: typeOf(condition.column) }));
      rows = rows.filter((row) =>
        checks.every(({ condition, type }) => matches(row[condition.column] ?? null, condition, type)),
      );
    } else if (operation.kind === 'take') {
      rows = rows.slice(0, operation.count);
    } else {
      const projected = operation.columns.map((column) => ({ Name: column, Type: typeOf(column) }));
      schema = projected;
      rows = rows.map((row) => Object.fromEntries(projected.map(({ Name }) => [Name, row[Name] ?? null])));
    }
  }
  return { schema, rows };
}

function matches(cell: string | number | null, condition: Condition, type: ColumnType): boolean {
  if (cell === null) return condition.operator === '!=';
  if (condition.operator === 'in') return condition.values.some((value) => compare(cell, value, type) === 0);
  const { operator, value } = condition;
  if (operator === 'contains') return String(cell).toLowerCase().includes(String(value).toLowerCase());
  if (operator === 'has')
    return String(cell)
      .toLowerCase()
      .split(/[^a-z0-9]+/i)
      .includes(String(value).toLowerCase());
  if (operator === '=~') return String(cell).toLowerCase() === String(value).toLowerCase();
  const order = compare(cell, value, type);
  switch (operator) {
    case '==':
      return order === 0;
    case '!=':
      return order !== 0;
    case '>':
      return order > 0;
    case '>=':
      return order >= 0;
    case '<':
      return order < 0;
    case '<=':
      return order <= 0;
  }
}

function compare(cell: string | number, value: Literal, type: ColumnType): number {
  if (type === 'DateTime') {
    const a = parseTimestamp(String(cell));
    const b = parseTimestamp(String(value));
    if (a === undefined || b === undefined) return String(cell).localeCompare(String(value));
    return a === b ? 0 : a < b ? -1 : 1;
  }
  if (type === 'Int64') return Number(cell) - Number(value);
  return String(cell) === String(value) ? 0 : String(cell) < String(value) ? -1 : 1;
}
