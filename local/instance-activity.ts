/**
 * What each instance of the local host did, for `npm start`'s screen: its invocations per function,
 * counted from the lines the host prints after each one ("Executed 'Functions.<name>' (Succeeded|Failed,
 * Id=…, Duration=…ms)", the real host's words).
 */
const EXECUTED = /Executed 'Functions\.([^']+)' \((Succeeded|Failed),/;

export class InstanceActivity {
  readonly #byInstance: Map<string, { invocations: number; failed: number }>[];

  constructor(instances: number) {
    this.#byInstance = Array.from({ length: instances }, () => new Map());
  }

  /** Counts the line if it reports a finished invocation on that instance (0 for the first). */
  record(line: string, instance: number): void {
    const match = EXECUTED.exec(line);
    const counts = this.#byInstance[instance];
    if (!match || !counts) return;
    const [, name, outcome] = match;
    const fn = counts.get(name!) ?? { invocations: 0, failed: 0 };
    fn.invocations += 1;
    if (outcome === 'Failed') fn.failed += 1;
    counts.set(name!, fn);
  }

  /** One line per instance: "instance 2 :7072  enrichIncident 40 (1 failed) · pollTenant 1". */
  describe(urls: readonly string[]): string[] {
    return this.#byInstance.map((counts, i) => {
      const port = urls[i] ? `:${new URL(urls[i]).port}` : '';
      const figures = [...counts]
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([name, { invocations, failed }]) => `${name} ${invocations}${failed > 0 ? ` (${failed} failed)` : ''}`);
      return `instance ${i + 1} ${port}  ${figures.join(' · ') || 'nothing yet'}`;
    });
  }
}
