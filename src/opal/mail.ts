// How OPAL "e-mails" the one-time password of a new registration: a Mailer. The built-in one drops each message
// as a JSON file (mode 0600) into a directory, the way a mail pickup directory works; a deployment plugs in an
// SMTP relay behind the same interface. Message bodies are never logged.

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';

export interface MailMessage {
  readonly to: string;
  readonly subject: string;
  readonly text: string;
}

export interface Mailer {
  send(message: MailMessage): Promise<void>;
}

export class DirectoryMailer implements Mailer {
  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  }
  async send(message: MailMessage): Promise<void> {
    const name = `${new Date().toISOString().replace(/[:.]/g, '-')}-${randomBytes(4).toString('hex')}.json`;
    writeFileSync(join(this.dir, name), `${JSON.stringify({ ...message, at: new Date().toISOString() }, null, 1)}\n`, { mode: 0o600 });
  }
}

/** Keeps messages in memory (tests). */
export class MemoryMailer implements Mailer {
  readonly sent: MailMessage[] = [];
  async send(message: MailMessage): Promise<void> {
    this.sent.push(message);
  }
}
