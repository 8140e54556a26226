import type { RowProblem } from './rows.js';

/** A row as it would sit in the table: the columns the stream declares, with where it came from. */
export interface RecordedRow {
  rule: string;
  stream: string;
  /** When the stand-in took it (ISO); the row's own TimeGenerated is in `columns`. */
  receivedAt: string;
  /** The caller's object id. */
  oid: string;
  columns: Record<string, unknown>;
}

/** A problem of an accepted call, as the rule's error log (`DCRLogErrors`) would hold it. */
export interface RecordedProblem extends RowProblem {
  rule: string;
  stream: string;
  at: string;
}

export interface IngestionSummary {
  rowsReceived: number;
  rowsStored: number;
  callsAccepted: number;
  callsRefused: number;
  problems: number;
  /** Rows stored per rule and stream (`<rule>/<stream>`). */
  rowsByStream: Record<string, number>;
}

/** What arrived, in memory and bounded (the oldest rows and problems go first); counts are never dropped. */
export class RowStore {
  #rows: RecordedRow[] = [];
  #problems: RecordedProblem[] = [];
  #summary: IngestionSummary = this.#empty();

  constructor(private readonly maxRows = 10_000) {}

  #empty(): IngestionSummary {
    return { rowsReceived: 0, rowsStored: 0, callsAccepted: 0, callsRefused: 0, problems: 0, rowsByStream: {} };
  }

  recordCall(
    rule: string,
    stream: string,
    oid: string,
    received: number,
    rows: Record<string, unknown>[],
    problems: RowProblem[],
  ) {
    const at = new Date().toISOString();
    this.#summary.callsAccepted += 1;
    this.#summary.rowsReceived += received;
    this.#summary.rowsStored += rows.length;
    this.#summary.problems += problems.length;
    const key = `${rule}/${stream}`;
    this.#summary.rowsByStream[key] = (this.#summary.rowsByStream[key] ?? 0) + rows.length;
    for (const columns of rows) this.#rows.push({ rule, stream, receivedAt: at, oid, columns });
    for (const problem of problems) this.#problems.push({ ...problem, rule, stream, at });
    if (this.#rows.length > this.maxRows) this.#rows.splice(0, this.#rows.length - this.maxRows);
    if (this.#problems.length > this.maxRows) this.#problems.splice(0, this.#problems.length - this.maxRows);
  }

  recordRefused(): void {
    this.#summary.callsRefused += 1;
  }

  rows(filter: { rule?: string; stream?: string } = {}): RecordedRow[] {
    return this.#rows.filter(
      (r) => (!filter.rule || r.rule === filter.rule) && (!filter.stream || r.stream === filter.stream),
    );
  }

  problems(filter: { rule?: string; stream?: string } = {}): RecordedProblem[] {
    return this.#problems.filter(
      (p) => (!filter.rule || p.rule === filter.rule) && (!filter.stream || p.stream === filter.stream),
    );
  }

  summary(): IngestionSummary {
    return { ...this.#summary, rowsByStream: { ...this.#summary.rowsByStream } };
  }

  clear(): void {
    this.#rows = [];
    this.#problems = [];
    this.#summary = this.#empty();
  }
}
