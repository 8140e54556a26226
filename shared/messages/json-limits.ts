/**
 * Structural limits on JSON that comes from outside (pushed bodies, Defender's pages, replayed
 * messages), checked before anything recursive touches it. `JSON.parse` is iterative in V8, but
 * `JSON.stringify`, zod and the Functions library's camel-case conversion of a queue trigger's
 * payload recurse: a 5,000-deep array (10 KB) overflows the stack in each of them. So the data is
 * walked once with an explicit stack, and refused with the path of the first violation.
 */
export interface StructureLimits {
  /** Nested objects and arrays, the value itself counting as level 1. */
  maxDepth: number;
  /** Keys of one object. */
  maxKeys: number;
  /** Items of one array. */
  maxItems: number;
}

/**
 * For one incident. A Defender incident nests about 6 deep (incident → alerts → alert → entities →
 * entity → a field's object) and Graph's evidence a few more; the largest real incidents hold
 * thousands of alerts or entities, never tens of thousands, and no object has a thousand fields.
 */
export const INCIDENT_LIMITS: StructureLimits = { maxDepth: 32, maxKeys: 1_000, maxItems: 10_000 };

/** For a message that wraps an incident (the event envelope, a dead letter): a few levels more. */
export const MESSAGE_LIMITS: StructureLimits = { ...INCIDENT_LIMITS, maxDepth: INCIDENT_LIMITS.maxDepth + 4 };

export interface StructureViolation {
  /** Dotted path of the first container that breaks a limit (`alerts.0.entities.3`); empty for the value itself. */
  path: string;
  message: string;
}

interface Frame {
  value: object;
  depth: number;
  parent?: Frame;
  key?: string;
}

/** The first place where `value` breaks a limit, or undefined. Visits each node once, iteratively. */
export function findStructureViolation(
  value: unknown,
  limits: StructureLimits = INCIDENT_LIMITS,
): StructureViolation | undefined {
  if (!isContainer(value)) return undefined;
  const stack: Frame[] = [{ value, depth: 1 }];
  while (stack.length > 0) {
    const frame = stack.pop()!;
    if (frame.depth > limits.maxDepth) return violation(frame, `nested deeper than ${limits.maxDepth} levels`);
    if (Array.isArray(frame.value)) {
      if (frame.value.length > limits.maxItems)
        return violation(frame, `holds ${frame.value.length} items; at most ${limits.maxItems} per array`);
      for (let i = frame.value.length - 1; i >= 0; i--) {
        const child: unknown = frame.value[i];
        if (isContainer(child)) stack.push({ value: child, depth: frame.depth + 1, parent: frame, key: String(i) });
      }
    } else {
      const keys = Object.keys(frame.value);
      if (keys.length > limits.maxKeys)
        return violation(frame, `holds ${keys.length} keys; at most ${limits.maxKeys} per object`);
      for (let i = keys.length - 1; i >= 0; i--) {
        const child: unknown = (frame.value as Record<string, unknown>)[keys[i]!];
        if (isContainer(child)) stack.push({ value: child, depth: frame.depth + 1, parent: frame, key: keys[i] });
      }
    }
  }
  return undefined;
}

function isContainer(value: unknown): value is object {
  return typeof value === 'object' && value !== null;
}

/** The path is built only for the violation, and is at most `maxDepth` + 1 keys long (each cut to 40 characters). */
function violation(frame: Frame, message: string): StructureViolation {
  const keys: string[] = [];
  for (let f: Frame | undefined = frame; f?.key !== undefined; f = f.parent)
    keys.push(f.key.length > 40 ? `${f.key.slice(0, 40)}…` : f.key);
  return { path: keys.reverse().join('.'), message };
}

/** One line for logs and dead letters: `structure: alerts.0.x: nested deeper than 32 levels`. */
export function describeViolation(v: StructureViolation): string {
  return `structure: ${v.path || '(top level)'}: ${v.message}`;
}
