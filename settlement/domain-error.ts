/**
 * A refusal the caller can act on, from enrollment, the market, tokens, governance,
 * certificates or rewards: a stable code, a sentence, and the HTTP status the API answers with. The API turns
 * it into `{"code", "message"}`, the CLI into one line and exit code 2.
 */
export class DomainError extends Error {
  override readonly name: string = 'DomainError';
  constructor(
    readonly code: string,
    message: string,
    readonly status: 400 | 403 | 404 | 409 | 410 | 422,
  ) {
    super(message);
  }
}
