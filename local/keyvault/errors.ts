/**
 * Key Vault's error answers. Every failure the stand-in gives is one of these, shaped as the real
 * service shapes them: `{"error":{"code","message","innererror"?}}`, so the SDK's `RestError.code`
 * and the app's error handling see what they would see in Azure.
 */
export class KeyVaultError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly innerCode?: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'KeyVaultError';
  }

  body(): { error: { code: string; message: string; innererror?: { code: string } } } {
    return {
      error: {
        code: this.code,
        message: this.message,
        ...(this.innerCode ? { innererror: { code: this.innerCode } } : {}),
      },
    };
  }
}

export function badParameter(message: string): KeyVaultError {
  return new KeyVaultError(400, 'BadParameter', message);
}

export function secretNotFound(name: string): KeyVaultError {
  return new KeyVaultError(
    404,
    'SecretNotFound',
    `A secret with (name/id) ${name} was not found in this key vault. If you recently deleted this secret you may be able to ` +
      'recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182',
  );
}

export function secretVersionNotFound(name: string, version: string): KeyVaultError {
  return secretNotFound(`${name}/${version}`);
}

export function deletedSecretNotFound(name: string): KeyVaultError {
  return new KeyVaultError(404, 'SecretNotFound', `Deleted Secret not found: ${name}`);
}

export function secretDisabled(): KeyVaultError {
  return new KeyVaultError(403, 'Forbidden', 'Operation get is not allowed on a disabled secret.', 'SecretDisabled');
}

export function deletedButRecoverable(name: string): KeyVaultError {
  return new KeyVaultError(
    409,
    'Conflict',
    `Secret ${name} is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the secret can only be recovered or purged.`,
    'ObjectIsDeletedButRecoverable',
  );
}

/** The answer for an injected `status` fault, with the code Key Vault uses for that status. */
export function faultError(status: number, retryAfterSeconds?: number): KeyVaultError {
  const headers: Record<string, string> =
    retryAfterSeconds === undefined ? {} : { 'retry-after': String(retryAfterSeconds) };
  const known: Record<number, [string, string]> = {
    429: [
      'Throttled',
      'Request was not processed because too many requests were received. Reason: VaultRequestTypeLimitReached',
    ],
    500: ['InternalServerError', 'An unexpected error occurred while processing the request.'],
    502: ['BadGateway', 'The service received an invalid response from an upstream server.'],
    503: ['ServiceUnavailable', 'The service is temporarily unavailable. Please try again later.'],
    504: ['GatewayTimeout', 'The service did not complete the request in time.'],
  };
  const [code, message] = known[status] ?? [
    status >= 500 ? 'InternalServerError' : 'BadRequest',
    `Injected fault: HTTP ${status}.`,
  ];
  return new KeyVaultError(status, code, message, undefined, headers);
}
