/**
 * The local mailbox of the embedded default: one RFC 822 file per email,
 * `<mailboxDir>/<notificationId>.eml`, written atomically (a temporary file hard-linked into
 * place, which fails if the name exists: the same notification never makes two files, even
 * when two workers race). `wallet mail` lists it and shows one message.
 */
import { randomUUID } from 'node:crypto';
import { link, mkdir, open, readdir, readFile, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Config } from '../config/index.js';
import { NOTIFICATION_ID_RE } from './notification.js';

export const mailboxDirOf = (config: Pick<Config, 'mailboxDir' | 'dataDir'>): string => config.mailboxDir ?? join(config.dataDir, 'mailbox');

export const MAIL_LIST_DEFAULT = 20;
export const MAIL_LIST_MAX = 1000;
/** headers are read from the first bytes of a message only */
const HEADER_BYTES_MAX = 16 * 1024;

const fileOf = (dir: string, id: string): string => {
  if (!NOTIFICATION_ID_RE.test(id)) throw new RangeError(`not a notification id: ${id}`);
  return join(dir, `${id}.eml`);
};

/** Writes the message unless the notification already has one; false when it had. */
export async function writeMailboxMessage(dir: string, notificationId: string, message: Buffer): Promise<boolean> {
  const file = fileOf(dir, notificationId);
  await mkdir(dir, { recursive: true });
  const tmp = join(dir, `.${notificationId}.${randomUUID()}.tmp`);
  await writeFile(tmp, message, { flag: 'wx' });
  try {
    await link(tmp, file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
}

export interface MailSummary {
  id: string;
  /** the Date header */
  date?: Date;
  to: string;
  subject: string;
  /** when the file was written: the list's order */
  deliveredAt: Date;
}

export interface Mail extends MailSummary {
  from: string;
  messageId: string;
  /** the text/plain part, decoded */
  text: string;
  raw: string;
}

/** The newest messages first (by delivery), at most limit. An absent mailbox is an empty one. */
export async function listMailbox(dir: string, opts: { limit?: number } = {}): Promise<MailSummary[]> {
  const limit = opts.limit ?? MAIL_LIST_DEFAULT;
  if (!Number.isInteger(limit) || limit < 1 || limit > MAIL_LIST_MAX) throw new RangeError(`limit must be an integer from 1 to ${MAIL_LIST_MAX}`);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const ids = names.filter((n) => n.endsWith('.eml') && !n.startsWith('.')).map((n) => n.slice(0, -4)).filter((id) => NOTIFICATION_ID_RE.test(id));
  const dated = await Promise.all(ids.map(async (id) => ({ id, deliveredAt: (await stat(fileOf(dir, id))).mtime })));
  dated.sort((a, b) => b.deliveredAt.getTime() - a.deliveredAt.getTime() || (a.id < b.id ? 1 : -1));
  return Promise.all(
    dated.slice(0, limit).map(async ({ id, deliveredAt }) => {
      const headers = parseHeaders(await readHead(fileOf(dir, id)));
      return { id, ...summaryOf(headers), deliveredAt };
    }),
  );
}

/** One message, decoded; undefined when there is none with that id. */
export async function readMail(dir: string, id: string): Promise<Mail | undefined> {
  if (!NOTIFICATION_ID_RE.test(id)) return undefined;
  const file = fileOf(dir, id);
  let raw: string;
  let deliveredAt: Date;
  try {
    [raw, deliveredAt] = await Promise.all([readFile(file, 'utf8'), stat(file).then((s) => s.mtime)]);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const { head, body } = splitMessage(raw);
  const headers = parseHeaders(head);
  return { id, ...summaryOf(headers), deliveredAt, from: headers.get('from') ?? '', messageId: headers.get('message-id') ?? '', text: textPart(headers, body), raw };
}

export function formatMailList(list: readonly MailSummary[]): string {
  if (!list.length) return 'the mailbox is empty\n';
  return list.map((m) => `${(m.date ?? m.deliveredAt).toISOString()}  ${m.to}  ${m.subject}  ${m.id}\n`).join('');
}

export function formatMail(mail: Mail): string {
  return `Date: ${(mail.date ?? mail.deliveredAt).toISOString()}\nFrom: ${mail.from}\nTo: ${mail.to}\nSubject: ${mail.subject}\nMessage-ID: ${mail.messageId}\nId: ${mail.id}\n\n${mail.text.replace(/\r\n/g, '\n')}${mail.text.endsWith('\n') ? '' : '\n'}`;
}

async function readHead(file: string): Promise<string> {
  const handle = await open(file, 'r');
  try {
    const buf = Buffer.alloc(HEADER_BYTES_MAX);
    const { bytesRead } = await handle.read(buf, 0, buf.length, 0);
    return splitMessage(buf.subarray(0, bytesRead).toString('utf8')).head;
  } finally {
    await handle.close();
  }
}

function summaryOf(headers: Map<string, string>): Pick<MailSummary, 'date' | 'to' | 'subject'> {
  const date = headers.has('date') ? new Date(headers.get('date')!) : undefined;
  return { ...(date && !Number.isNaN(date.getTime()) ? { date } : {}), to: headers.get('to') ?? '', subject: headers.get('subject') ?? '' };
}

function splitMessage(raw: string): { head: string; body: string } {
  const m = /\r?\n\r?\n/.exec(raw);
  return m ? { head: raw.slice(0, m.index), body: raw.slice(m.index + m[0].length) } : { head: raw, body: '' };
}

/** Header names lower-cased, folded lines joined, encoded words (RFC 2047) decoded. */
function parseHeaders(head: string): Map<string, string> {
  const headers = new Map<string, string>();
  for (const line of head.replace(/\r?\n[ \t]+/g, ' ').split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    if (!headers.has(name)) headers.set(name, decodeWords(line.slice(colon + 1).trim()));
  }
  return headers;
}

function charsetDecode(bytes: Buffer, charset: string): string {
  try {
    return new TextDecoder(charset).decode(bytes);
  } catch {
    return bytes.toString('utf8');
  }
}

const qpBytes = (s: string): Buffer => {
  const out: number[] = [];
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '=' && /^[0-9A-Fa-f]{2}$/.test(s.slice(i + 1, i + 3))) {
      out.push(parseInt(s.slice(i + 1, i + 3), 16));
      i += 2;
    } else out.push(...Buffer.from(s[i]!, 'utf8'));
  }
  return Buffer.from(out);
};

export function decodeWords(value: string): string {
  return value
    .replace(/(=\?[^?\s]+\?[BbQq]\?[^?\s]*\?=)\s+(?==\?)/g, '$1') // whitespace between encoded words is not text
    .replace(/=\?([^?\s]+)\?([BbQq])\?([^?\s]*)\?=/g, (_m, charset: string, enc: string, data: string) =>
      charsetDecode(enc.toUpperCase() === 'B' ? Buffer.from(data, 'base64') : qpBytes(data.replace(/_/g, ' ')), charset),
    );
}

function decodeBody(body: string, encoding: string | undefined, charset: string): string {
  switch ((encoding ?? '7bit').toLowerCase()) {
    case 'base64':
      return charsetDecode(Buffer.from(body.replace(/\s+/g, ''), 'base64'), charset);
    case 'quoted-printable':
      return charsetDecode(qpBytes(body.replace(/=\r?\n/g, '')), charset);
    default:
      return body;
  }
}

const param = (value: string | undefined, name: string): string | undefined => (value ? new RegExp(`;\\s*${name}="?([^";]+)"?`, 'i').exec(value)?.[1] : undefined);

/** The first text/plain part (walking nested multiparts), decoded. */
function textPart(headers: Map<string, string>, body: string, depth = 0): string {
  const type = headers.get('content-type') ?? 'text/plain';
  const boundary = param(type, 'boundary');
  if (/^multipart\//i.test(type) && boundary && depth < 5) {
    const parts = body.split(`--${boundary}`).slice(1);
    for (const part of parts) {
      if (part.startsWith('--')) break;
      const { head, body: partBody } = splitMessage(part.replace(/^\r?\n/, ''));
      const text = textPart(parseHeaders(head), partBody.replace(/\r?\n$/, ''), depth + 1);
      if (text) return text;
    }
    return '';
  }
  if (!/^text\/plain/i.test(type)) return '';
  return decodeBody(body, headers.get('content-transfer-encoding'), param(type, 'charset') ?? 'utf-8');
}
