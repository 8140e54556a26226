import { RestError, type TableClient, type TableEntityResult } from '@azure/data-tables';

/**
 * A Table storage table that creates itself on first use (once per process, retried after a
 * failure) and reads an entity as `undefined` when it does not exist.
 */
export class LazyTable {
  #ready: Promise<void> | undefined;

  constructor(readonly client: TableClient) {}

  /** The client, once the table exists. */
  async ready(): Promise<TableClient> {
    this.#ready ??= this.client.createTable().catch((err: unknown) => {
      this.#ready = undefined;
      throw err;
    });
    await this.#ready;
    return this.client;
  }

  async find<T extends object>(partitionKey: string, rowKey: string): Promise<TableEntityResult<T> | undefined> {
    const client = await this.ready();
    try {
      return await client.getEntity<T>(partitionKey, rowKey);
    } catch (err) {
      if (err instanceof RestError && err.statusCode === 404) return undefined;
      throw err;
    }
  }
}
