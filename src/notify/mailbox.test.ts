import { mkdtemp, readdir, rm, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMailboxMailer, type EmailMessage } from './email.js';
import { listMailbox, readMail } from './mailbox.js';
import { registerMailCommand } from './mail-cli.js';

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'wallet-mailbox-'));
});
afterAll(() => rm(root, { recursive: true, force: true }));

let n = 0;
async function freshDir(): Promise<string> {
  return mkdtemp(join(root, `box${n++}-`));
}

function message(i: number, extra: Partial<EmailMessage> = {}): EmailMessage {
  return {
    notificationId: `evt_${i}:usr_${i}`,
    userId: 'usr_000ABCDEFGHJKMNPQRSTVWXYZ0123',
    to: `user${i}@example.com`,
    subject: `Subject ${i}`,
    text: `Hello ${i}\nsecond line\n`,
    html: `<p>Hello ${i}</p>`,
    at: new Date(Date.UTC(2025, 0, 1, 0, 0, i)).toISOString(),
    ...extra,
  };
}

/** writes the messages, each delivered one second after the one before */
async function deliver(dir: string, messages: EmailMessage[]): Promise<void> {
  const mailer = createMailboxMailer({ dir, from: 'Wallet <no-reply@wallet.test>' });
  for (const [i, m] of messages.entries()) {
    await mailer.deliver(m);
    const t = new Date(Date.UTC(2025, 0, 1, 0, 0, i));
    await utimes(join(dir, `${m.notificationId}.eml`), t, t);
  }
  await mailer.close();
}

async function cli(args: string[], dir: string): Promise<string> {
  let out = '';
  const program = new Command('wallet').exitOverride().configureOutput({ writeErr: () => undefined });
  registerMailCommand(program, { env: { MAILBOX_DIR: dir }, out: { write: (s: string) => (out += s) } });
  await program.parseAsync(['mail', ...args], { from: 'user' });
  return out;
}

describe('the mailbox', () => {
  it('writes one RFC 822 file per notification, with its headers', async () => {
    const dir = await freshDir();
    await deliver(dir, [message(1)]);
    expect(await readdir(dir)).toEqual(['evt_1:usr_1.eml']);
    const mail = await readMail(dir, 'evt_1:usr_1');
    expect(mail).toMatchObject({ to: 'user1@example.com', subject: 'Subject 1', from: 'Wallet <no-reply@wallet.test>', messageId: '<evt_1.usr_1@wallet.test>', date: new Date('2025-01-01T00:00:01Z') });
    expect(mail!.text).toContain('Hello 1\nsecond line');
    expect(mail!.raw).toMatch(/Content-Type: multipart\/alternative/);
  });

  it('writes a notification once however often it is delivered', async () => {
    const dir = await freshDir();
    const mailer = createMailboxMailer({ dir, from: 'no-reply@wallet.test' });
    const results = await Promise.all([mailer.deliver(message(2)), mailer.deliver(message(2)), mailer.deliver(message(2, { subject: 'changed' }))]);
    expect(results.sort()).toEqual(['duplicate', 'duplicate', 'sent']);
    expect(await readdir(dir)).toEqual(['evt_2:usr_2.eml']);
  });

  it('lists the newest first, at most the limit', async () => {
    const dir = await freshDir();
    await deliver(dir, [message(1), message(2), message(3)]);
    const list = await listMailbox(dir, { limit: 2 });
    expect(list.map((m) => m.id)).toEqual(['evt_3:usr_3', 'evt_2:usr_2']);
    expect(list[0]).toMatchObject({ to: 'user3@example.com', subject: 'Subject 3', date: new Date('2025-01-01T00:00:03Z') });
  });

  it('decodes non-ASCII subjects and bodies', async () => {
    const dir = await freshDir();
    await deliver(dir, [message(4, { subject: 'Vous avez reçu 12,34 € de Zoë', text: 'Bonjour Zoë — ¥1,200 and €5.00\n'.repeat(10) })]);
    const [listed] = await listMailbox(dir);
    expect(listed!.subject).toBe('Vous avez reçu 12,34 € de Zoë');
    expect((await readMail(dir, 'evt_4:usr_4'))!.text).toContain('Bonjour Zoë — ¥1,200 and €5.00\n');
  });

  it('is empty when the folder does not exist', async () => {
    expect(await listMailbox(join(root, 'nowhere'))).toEqual([]);
  });

  it('finds no message for an unknown or path-like id', async () => {
    const dir = await freshDir();
    expect(await readMail(dir, 'evt_9:usr_9')).toBeUndefined();
    expect(await readMail(dir, '../../etc/passwd')).toBeUndefined();
  });
});

describe('wallet mail', () => {
  it('lists date, to, subject and id, newest first', async () => {
    const dir = await freshDir();
    await deliver(dir, [message(1), message(2)]);
    expect(await cli([], dir)).toBe('2025-01-01T00:00:02.000Z  user2@example.com  Subject 2  evt_2:usr_2\n2025-01-01T00:00:01.000Z  user1@example.com  Subject 1  evt_1:usr_1\n');
    expect(await cli(['--limit', '1'], dir)).toBe('2025-01-01T00:00:02.000Z  user2@example.com  Subject 2  evt_2:usr_2\n');
  });

  it('says so when the mailbox is empty', async () => {
    expect(await cli([], await freshDir())).toBe('the mailbox is empty\n');
  });

  it('show prints the headers and the text of one message', async () => {
    const dir = await freshDir();
    await deliver(dir, [message(1)]);
    const out = await cli(['show', 'evt_1:usr_1'], dir);
    expect(out).toContain('To: user1@example.com\n');
    expect(out).toContain('Subject: Subject 1\n');
    expect(out).toContain('\n\nHello 1\nsecond line\n');
  });

  it('show --raw prints the message as stored', async () => {
    const dir = await freshDir();
    await deliver(dir, [message(1)]);
    expect(await cli(['show', 'evt_1:usr_1', '--raw'], dir)).toMatch(/^Content-Type: multipart\/alternative|\nSubject: Subject 1\r?\n/);
  });

  it('show fails for an unknown id', async () => {
    await expect(cli(['show', 'evt_1:usr_1'], await freshDir())).rejects.toThrow(/no message evt_1:usr_1/);
  });

  it('refuses a limit out of range', async () => {
    await expect(cli(['--limit', '0'], await freshDir())).rejects.toThrow(/--limit must be an integer from 1 to 1000/);
  });
});
