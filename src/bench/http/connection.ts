/**
 * A minimal HTTP/1.1 keep-alive client connection for the load generator, on a raw socket.
 *
 * Why not undici or autocannon: the generator shares two cores with the server it measures, so
 * every microsecond it spends is taken from the platform. This does only what the benchmark
 * needs: requests are prebuilt strings written to the socket (corked per tick, so pipelined
 * requests leave in one write), responses are parsed from the status line and Content-Length
 * (or chunked framing), and the body is decoded only when the caller asks for it or the
 * status is an error (to read the problem's `code`). Responses arrive in request order
 * (HTTP/1.1 pipelining), so the in-flight requests are a FIFO.
 */
import { connect, type Socket } from 'node:net';

export interface InFlightRequest {
  /** performance.now() when it should have been sent (open loop) or was sent (closed loop) */
  startedAt: number;
  /** decode the body of a success too */
  wantBody: boolean;
}

export interface ConnectionEvents<R extends InFlightRequest> {
  response(req: R, status: number, body: string | undefined, conn: Connection<R>): void;
  /** the socket failed or closed with these requests unanswered (their outcome is unknown) */
  failed(reqs: R[], reason: string, conn: Connection<R>): void;
  /** connected again, or able to take requests */
  ready(conn: Connection<R>): void;
}

const HEAD_END = Buffer.from('\r\n\r\n');
const CONTENT_LENGTH = /\r\ncontent-length:[ \t]*(\d+)/i;
const CHUNKED = /\r\ntransfer-encoding:[ \t]*chunked/i;
const CLOSE = /\r\nconnection:[ \t]*close/i;

export class Connection<R extends InFlightRequest> {
  readonly inFlight: R[] = [];
  connected = false;
  private socket?: Socket;
  private buf: Buffer | undefined;
  private corked = false;
  private stopped = false;
  private closing = false;

  constructor(
    readonly host: string,
    readonly port: number,
    private readonly events: ConnectionEvents<R>,
    private readonly reconnectMs = 100,
  ) {}

  open(): void {
    const socket = connect({ host: this.host, port: this.port, noDelay: true });
    this.socket = socket;
    this.buf = undefined;
    this.closing = false;
    socket.on('connect', () => {
      this.connected = true;
      this.events.ready(this);
    });
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => undefined); // 'close' follows and reports
    socket.on('close', () => this.onClose('connection closed'));
  }

  send(text: string, req: R): void {
    const socket = this.socket!;
    if (!this.corked) {
      this.corked = true;
      socket.cork();
      process.nextTick(() => {
        this.corked = false;
        socket.uncork();
      });
    }
    this.inFlight.push(req);
    socket.write(text, 'latin1');
  }

  /** ends the socket after the responses in flight (or at once) and does not reconnect */
  stop(): void {
    this.stopped = true;
    this.socket?.destroy();
  }

  /** fails what is in flight (a timeout) and reconnects */
  reset(reason: string): void {
    const socket = this.socket;
    if (!socket) return;
    socket.removeAllListeners('close');
    socket.destroy();
    this.onClose(reason);
  }

  private onClose(reason: string): void {
    this.connected = false;
    const lost = this.inFlight.splice(0);
    if (lost.length) this.events.failed(lost, reason, this);
    if (!this.stopped) setTimeout(() => !this.stopped && this.open(), this.reconnectMs).unref();
  }

  private onData(chunk: Buffer): void {
    const buf = this.buf ? Buffer.concat([this.buf, chunk]) : chunk;
    let at = 0;
    while (at < buf.length) {
      const headEnd = buf.indexOf(HEAD_END, at);
      if (headEnd < 0) break;
      const status = (buf[at + 9]! - 48) * 100 + (buf[at + 10]! - 48) * 10 + (buf[at + 11]! - 48);
      const head = buf.toString('latin1', at, headEnd);
      const bodyStart = headEnd + 4;
      let bodyEnd: number;
      let body: string | undefined;
      const req = this.inFlight[0];
      const decode = req !== undefined && (req.wantBody || status >= 400);
      const length = CONTENT_LENGTH.exec(head);
      if (length) {
        bodyEnd = bodyStart + Number(length[1]);
        if (bodyEnd > buf.length) break;
        if (decode) body = buf.toString('utf8', bodyStart, bodyEnd);
      } else if (CHUNKED.test(head)) {
        const chunked = readChunked(buf, bodyStart, decode);
        if (!chunked) break;
        bodyEnd = chunked.end;
        body = chunked.body;
      } else {
        bodyEnd = bodyStart; // 204, 304, or a bodiless answer
      }
      at = bodyEnd;
      if (CLOSE.test(head)) this.closing = true;
      const answered = this.inFlight.shift();
      if (answered) this.events.response(answered, status, body, this);
    }
    this.buf = at < buf.length ? buf.subarray(at) : undefined;
    if (this.closing && this.inFlight.length === 0) this.reset('server closed the connection');
  }
}

function readChunked(buf: Buffer, start: number, decode: boolean): { end: number; body?: string } | undefined {
  let at = start;
  const parts: string[] = [];
  for (;;) {
    const lineEnd = buf.indexOf('\r\n', at, 'latin1');
    if (lineEnd < 0) return undefined;
    const size = parseInt(buf.toString('latin1', at, lineEnd), 16);
    if (!Number.isFinite(size)) return undefined;
    const dataStart = lineEnd + 2;
    if (size === 0) {
      const end = buf.indexOf(HEAD_END, lineEnd); // no trailers: "0\r\n\r\n"
      if (end < 0) return undefined;
      return { end: end + 4, body: decode ? parts.join('') : undefined };
    }
    if (dataStart + size + 2 > buf.length) return undefined;
    if (decode) parts.push(buf.toString('utf8', dataStart, dataStart + size));
    at = dataStart + size + 2;
  }
}
