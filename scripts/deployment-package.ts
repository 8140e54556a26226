/**
 * What azd (and Core Tools) put in the deployment package: the project's files minus what .funcignore
 * (gitignore syntax) leaves out. test/infra/deployment-package.test.ts holds .funcignore to what Azure
 * runs; the bench states the package's size.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

interface Rule {
  negated: boolean;
  directoryOnly: boolean;
  regex: RegExp;
}

/** A .funcignore (gitignore syntax) as a predicate on project-relative paths (of files, unless told). */
export function ignoreRules(text: string): (path: string, isDirectory?: boolean) => boolean {
  const rules: Rule[] = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((line) => {
      const negated = line.startsWith('!');
      let pattern = negated ? line.slice(1) : line;
      const directoryOnly = pattern.endsWith('/');
      if (directoryOnly) pattern = pattern.slice(0, -1);
      // A pattern with a slash is relative to the root; one without matches a name at any depth.
      const anchored = pattern.includes('/');
      pattern = pattern.replace(/^\//, '');
      const body = pattern
        .split(/(\*\*|\*|\?)/)
        .map((part) =>
          part === '**'
            ? '.*'
            : part === '*'
              ? '[^/]*'
              : part === '?'
                ? '[^/]'
                : part.replace(/[.+^${}()|[\]\\]/g, '\\$&'),
        )
        .join('');
      return { negated, directoryOnly, regex: new RegExp(`${anchored ? '^' : '(^|/)'}${body}$`) };
    });
  const matches = (path: string, isDirectory: boolean) =>
    rules.reduce(
      (ignored, rule) => ((!rule.directoryOnly || isDirectory) && rule.regex.test(path) ? !rule.negated : ignored),
      false,
    );
  // As in git, nothing inside an ignored directory can be included again.
  return (path, isDirectory = false) => {
    const segments = path.split('/');
    for (let i = 1; i < segments.length; i++) if (matches(segments.slice(0, i).join('/'), true)) return true;
    return matches(path, isDirectory);
  };
}

/** The project-relative paths of the files the deployment package holds, and their total size. */
export function deploymentFiles(root: string): { files: string[]; bytes: number } {
  const ignored = ignoreRules(readFileSync(join(root, '.funcignore'), 'utf8'));
  const files: string[] = [];
  let bytes = 0;
  const walk = (dir: string) => {
    for (const entry of readdirSync(join(root, dir), { withFileTypes: true })) {
      const path = dir ? `${dir}/${entry.name}` : entry.name;
      if (entry.isDirectory()) {
        // A directory .funcignore leaves out is not entered (nothing inside it can be included again).
        if (!ignored(path, true)) walk(path);
      } else if (entry.isFile() && !ignored(path)) {
        files.push(path);
        bytes += statSync(join(root, path)).size;
      }
    }
  };
  walk('');
  return { files: files.sort(), bytes };
}
