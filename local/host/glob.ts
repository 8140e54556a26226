import { readdirSync } from 'node:fs';
import { join, posix } from 'node:path';

/**
 * `*` matches within one path segment, `**` any number of segments (including none), `?` one
 * character. The subset of glob the Node worker accepts in package.json `main`.
 */
export function globToRegExp(pattern: string): RegExp {
  let source = '';
  for (let i = 0; i < pattern.length; i++) {
    const char = pattern[i]!;
    if (char === '*' && pattern[i + 1] === '*') {
      const followedBySlash = pattern[i + 2] === '/';
      source += followedBySlash ? '(?:.*/)?' : '.*';
      i += followedBySlash ? 2 : 1;
    } else if (char === '*') {
      source += '[^/]*';
    } else if (char === '?') {
      source += '[^/]';
    } else {
      source += char.replace(/[.+^${}()|[\]\\]/g, '\\$&');
    }
  }
  return new RegExp(`^${source}$`);
}

function normalise(pattern: string): string {
  return posix.normalize(pattern.replace(/\\/g, '/')).replace(/^\.\//, '');
}

/** The directory part of the pattern before its first wildcard: the only place worth walking. */
function staticBase(pattern: string): string {
  const segments = pattern.split('/');
  const base: string[] = [];
  for (const segment of segments.slice(0, -1)) {
    if (/[*?]/.test(segment)) break;
    base.push(segment);
  }
  return base.join('/');
}

/** Files under `root` matching `pattern` (relative, `/`-separated), sorted; node_modules is skipped. */
export function expandGlob(root: string, pattern: string): string[] {
  const normalised = normalise(pattern);
  const matcher = globToRegExp(normalised);
  const matches: string[] = [];
  const walk = (relativeDir: string): void => {
    let entries;
    try {
      entries = readdirSync(join(root, relativeDir), { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      const relative = relativeDir ? `${relativeDir}/${entry.name}` : entry.name;
      if (entry.isDirectory()) {
        if (entry.name !== 'node_modules') walk(relative);
      } else if (matcher.test(relative)) {
        matches.push(relative);
      }
    }
  };
  walk(staticBase(normalised));
  return matches.sort();
}
