// Base error type for purselab: every error a user can see carries a stable code and a one-line message.

export class PurselabError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}
