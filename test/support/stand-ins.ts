import { inject } from 'vitest';
import { FaultBoard } from '../../local/common/faults.js';
import { createDemoWorld, type DemoWorld } from '../../local/demo.js';
import { appSettingsFor, startStandIns, type StandIns } from '../../local/stack.js';

export interface TestStandIns extends StandIns {
  world: DemoWorld;
  faults: FaultBoard;
  /** The app settings that point the app at these stand-ins and the run's Azurite. */
  appSettings: Record<string, string>;
}

/** The Entra ID, Key Vault and Defender stand-ins with the demo world seeded, for integration tests. */
export async function startTestStandIns(): Promise<TestStandIns> {
  const world = createDemoWorld();
  const faults = new FaultBoard();
  const standIns = await startStandIns({ tls: inject('tls'), faults, world });
  const appSettings = appSettingsFor(world, inject('storage').connectionString, standIns);
  return { ...standIns, world, faults, appSettings };
}
