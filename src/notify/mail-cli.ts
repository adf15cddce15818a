/** `wallet mail`: the local mailbox of the embedded default (emails are written there when SMTP_URL is unset). */
import { InvalidArgumentError, type Command } from 'commander';
import { loadConfig } from '../config/index.js';
import { formatMail, formatMailList, listMailbox, mailboxDirOf, MAIL_LIST_DEFAULT, MAIL_LIST_MAX, readMail } from './mailbox.js';

export interface MailCliIo {
  env?: Record<string, string | undefined>;
  out?: { write(s: string): unknown };
}

function limitOption(raw: string): number {
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n < 1 || n > MAIL_LIST_MAX) throw new InvalidArgumentError(`--limit must be an integer from 1 to ${MAIL_LIST_MAX}`);
  return n;
}

export function registerMailCommand(program: Command, io: MailCliIo = {}): void {
  const out = io.out ?? process.stdout;
  const dir = () => mailboxDirOf(loadConfig(io.env ?? process.env));
  const mail = program
    .command('mail')
    .description('list the local mailbox, newest first (date, to, subject, id); emails land there when SMTP_URL is unset')
    .option('--limit <n>', `messages to list (1-${MAIL_LIST_MAX})`, limitOption, MAIL_LIST_DEFAULT)
    .action(async (opts: { limit: number }) => {
      out.write(formatMailList(await listMailbox(dir(), { limit: opts.limit })));
    });
  mail
    .command('show')
    .description('print one message: its headers and text')
    .argument('<id>', 'the message id (as `wallet mail` lists it)')
    .option('--raw', 'the message as stored (RFC 822)')
    .action(async (id: string, opts: { raw?: boolean }) => {
      const found = await readMail(dir(), id);
      if (!found) throw new Error(`no message ${id} in ${dir()}`);
      out.write(opts.raw ? found.raw : formatMail(found));
    });
}
