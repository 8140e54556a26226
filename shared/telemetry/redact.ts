/**
 * Removes anything credential-shaped from text that may reach a log line or an HTTP answer:
 * JWTs, client secrets and assertions in form bodies, storage keys and SAS signatures.
 */
const PATTERNS: [RegExp, string][] = [
  [/eyJ[\w-]+\.[\w-]+\.[\w-]*/g, '[redacted-jwt]'],
  [/(client_secret|client_assertion|assertion|password|refresh_token|access_token)=([^&\s"']+)/gi, '$1=[redacted]'],
  [
    /("(?:client_secret|clientSecret|password|access_token|accessToken|secret|value)"\s*:\s*")(?:[^"\\]|\\.)*"/gi,
    '$1[redacted]"',
  ],
  [/(AccountKey|SharedAccessKey|SharedAccessSignature)=([^;\s]+)/gi, '$1=[redacted]'],
  [/([?&]sig=)[^&\s"']+/gi, '$1[redacted]'],
  [/(Bearer\s+)[\w.~+/=-]+/gi, '$1[redacted]'],
];

export function redact(text: string): string {
  return PATTERNS.reduce((t, [pattern, replacement]) => t.replace(pattern, replacement), text);
}

const MAX_DESCRIPTION = 600;

/** A short, redacted description of an error, safe to log or return. */
export function describeError(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    const status = (err as { statusCode?: unknown }).statusCode;
    const prefix = [
      err.name,
      typeof code === 'string' ? code : undefined,
      typeof status === 'number' ? `HTTP ${status}` : undefined,
    ]
      .filter(Boolean)
      .join(' ');
    const message = err.message
      .split('\n')
      .map((line) => line.trim())
      .filter(Boolean)
      .join(' ');
    return redact(`${prefix}: ${message}`).slice(0, MAX_DESCRIPTION);
  }
  return redact(String(err));
}
