import { spawn, type ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';

const repo = resolve(import.meta.dirname, '..', '..');

export interface StartedStack {
  child: ChildProcess;
  /** Everything the process printed so far (it keeps growing while it runs). */
  readonly output: string;
}

/** Runs `npm start` (`dist/local/start.js`) with these arguments as a user would, and waits for its "Ready in" line. */
export async function startLocalStack(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<StartedStack> {
  const child = spawn(process.execPath, ['dist/local/start.js', ...args], {
    cwd: repo,
    stdio: ['ignore', 'pipe', 'pipe'],
    env,
  });
  let output = '';
  await new Promise<void>((ready, fail) => {
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (/Ready in [\d.]+ s/.test(output)) ready();
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => fail(new Error(`npm start ${args.join(' ')} exited (${code}):\n${output}`)));
  });
  return {
    child,
    get output() {
      return output;
    },
  };
}
