import { createHash } from 'node:crypto';
import type { IncidentUpdate } from '../sources/defender/client.js';
import type { IncidentApiClient } from '../sources/incident-api.js';
import type { Tenant } from '../tenants/tenants.js';

/**
 * Write-back to Defender after routing (optional per route): a `relayed:<route>` tag or a comment.
 * Either change bumps the incident's lastUpdateTime, so the next poll sees a new version; the
 * fingerprint below ignores exactly what write-back changes, which lets the enricher recognise that
 * version as its own echo instead of routing it again as news.
 */
export const WRITE_BACK_MARKER = '[defender-relay]';
export const RELAYED_TAG_PREFIX = 'relayed:';

export type WriteBackSpec = { tag: string } | { comment: string };

function isOwnComment(comment: unknown): boolean {
  return (
    typeof (comment as { comment?: unknown })?.comment === 'string' &&
    (comment as { comment: string }).comment.startsWith(WRITE_BACK_MARKER)
  );
}

const isOwnTag = (tag: unknown) => typeof tag === 'string' && tag.startsWith(RELAYED_TAG_PREFIX);

/**
 * Whether the incident holds a tag or comment of the relay's write-back. Only such a version can be
 * the echo of a write-back (which adds one), so only it needs the last routed fingerprint looked up.
 */
export function carriesWriteBack(incident: Record<string, unknown>): boolean {
  return (
    (Array.isArray(incident.tags) && incident.tags.some(isOwnTag)) ||
    (Array.isArray(incident.comments) && incident.comments.some(isOwnComment))
  );
}

/** A hash of what an analyst could have changed: everything but lastUpdateTime and the relay's own tags and comments. */
export function contentFingerprint(incident: Record<string, unknown>): string {
  const { lastUpdateTime: _ignored, ...rest } = incident;
  const tags = Array.isArray(rest.tags) ? rest.tags.filter((t) => !isOwnTag(t)) : rest.tags;
  const comments = Array.isArray(rest.comments) ? rest.comments.filter((c) => !isOwnComment(c)) : rest.comments;
  return createHash('sha256')
    .update(stableStringify({ ...rest, tags, comments }))
    .digest('hex');
}

function stableStringify(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stableStringify).join(',')}]`;
  if (value && typeof value === 'object') {
    return `{${Object.keys(value)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${stableStringify((value as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/** Applies one write-back; a tag already present is not written again. Returns whether Defender was called. */
export async function writeBack(
  defender: Pick<IncidentApiClient, 'updateIncident'>,
  tenant: Tenant,
  incident: { incidentId: number; tags?: unknown },
  spec: WriteBackSpec,
): Promise<boolean> {
  let update: Pick<IncidentUpdate, 'tags' | 'comment'>;
  if ('tag' in spec) {
    const tags = Array.isArray(incident.tags) ? incident.tags.filter((t): t is string => typeof t === 'string') : [];
    if (tags.includes(spec.tag)) return false;
    update = { tags: [...tags, spec.tag] };
  } else {
    update = { comment: `${WRITE_BACK_MARKER} ${spec.comment}` };
  }
  await defender.updateIncident(tenant, incident.incidentId, update);
  return true;
}
