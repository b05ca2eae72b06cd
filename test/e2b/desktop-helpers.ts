import { createCipheriv } from 'node:crypto';
import { inflateSync } from 'node:zlib';

/** What desktop.test.ts needs to look at a screenshot and speak to the VNC stream. */

export interface Image {
  width: number;
  height: number;
  /** Bytes per pixel (3: RGB, 4: RGBA). */
  channels: number;
  /** Unfiltered rows, `width * channels` bytes each. */
  pixels: Buffer;
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** Decodes an 8-bit, non-interlaced RGB or RGBA PNG (what scrot writes); throws on anything else. */
export function decodePng(png: Uint8Array): Image {
  const buf = Buffer.from(png);
  if (!buf.subarray(0, 8).equals(PNG_SIGNATURE)) throw new Error('not a PNG');
  let width = 0;
  let height = 0;
  let channels = 0;
  const idat: Buffer[] = [];
  for (let at = 8; at < buf.length;) {
    const len = buf.readUInt32BE(at);
    const type = buf.toString('latin1', at + 4, at + 8);
    const data = buf.subarray(at + 8, at + 8 + len);
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      const [depth, colour, , , interlace] = [data[8], data[9], data[10], data[11], data[12]];
      if (depth !== 8 || interlace !== 0 || (colour !== 2 && colour !== 6))
        throw new Error(`unsupported PNG: depth ${depth}, colour type ${colour}, interlace ${interlace}`);
      channels = colour === 2 ? 3 : 4;
    } else if (type === 'IDAT') idat.push(data);
    at += 12 + len;
  }
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  const pixels = Buffer.alloc(stride * height);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)] ?? -1;
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    for (let x = 0; x < stride; x++) {
      const a = x >= channels ? pixels[y * stride + x - channels]! : 0;
      const b = y > 0 ? pixels[(y - 1) * stride + x]! : 0;
      const c = x >= channels && y > 0 ? pixels[(y - 1) * stride + x - channels]! : 0;
      const v = line[x]!;
      let out: number;
      switch (filter) {
        case 0:
          out = v;
          break;
        case 1:
          out = v + a;
          break;
        case 2:
          out = v + b;
          break;
        case 3:
          out = v + ((a + b) >> 1);
          break;
        case 4: {
          const p = a + b - c;
          const [pa, pb, pc] = [Math.abs(p - a), Math.abs(p - b), Math.abs(p - c)];
          out = v + (pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
          break;
        }
        default:
          throw new Error(`bad PNG filter ${filter}`);
      }
      pixels[y * stride + x] = out & 0xff;
    }
  }
  return { width, height, channels, pixels };
}

export interface Rect {
  x: number;
  y: number;
  width: number;
  height: number;
}

/** How many pixels inside `rect` differ between two images of the same size. */
export function changedPixels(a: Image, b: Image, rect: Rect): number {
  let n = 0;
  const stride = a.width * a.channels;
  for (let y = Math.max(0, rect.y); y < Math.min(a.height, rect.y + rect.height); y++) {
    for (let x = Math.max(0, rect.x); x < Math.min(a.width, rect.x + rect.width); x++) {
      const at = y * stride + x * a.channels;
      if (a.pixels.compare(b.pixels, at, at + 3, at, at + 3) !== 0) n++;
    }
  }
  return n;
}

/**
 * The client side of an RFB (VNC) handshake over noVNC's WebSocket, far enough to see what a
 * viewer sees: the security types offered, whether authentication passes, and the framebuffer
 * size (RFC 6143 §7.1-7.3).
 */
export class RfbClient {
  private buffered = Buffer.alloc(0);
  private wanted?: { n: number; resolve: (b: Buffer) => void };
  private closed = false;
  private readonly ws: WebSocket;

  private constructor(ws: WebSocket) {
    this.ws = ws;
    ws.binaryType = 'arraybuffer';
    ws.addEventListener('message', (m) => {
      this.buffered = Buffer.concat([this.buffered, Buffer.from(m.data as ArrayBuffer)]);
      this.deliver();
    });
    ws.addEventListener('close', () => {
      this.closed = true;
      this.deliver();
    });
  }

  /** Opens the WebSocket (headers route it through Cove's gateway) once it is upgraded. */
  static open(url: string, headers: Record<string, string>): Promise<RfbClient> {
    // Node's WebSocket takes headers (undici); the DOM type does not know them.
    const init: unknown = { headers, protocols: ['binary'] };
    const ws = new WebSocket(url, init as string[]);
    return new Promise((resolve, reject) => {
      ws.addEventListener('open', () => resolve(new RfbClient(ws)));
      ws.addEventListener('error', () => reject(new Error(`WebSocket to ${url} failed`)));
    });
  }

  private deliver(): void {
    const w = this.wanted;
    if (w === undefined) return;
    if (this.buffered.length >= w.n) {
      this.wanted = undefined;
      const out = this.buffered.subarray(0, w.n);
      this.buffered = this.buffered.subarray(w.n);
      w.resolve(out);
    } else if (this.closed) {
      this.wanted = undefined;
      w.resolve(Buffer.alloc(0));
    }
  }

  /** The next n bytes, or fewer if the server closed first. */
  read(n: number): Promise<Buffer> {
    return new Promise((resolve) => {
      this.wanted = { n, resolve };
      this.deliver();
    });
  }

  send(bytes: Buffer | number[]): void {
    this.ws.send(Buffer.from(bytes));
  }

  /** Version exchange; returns the security types the server offers. */
  async hello(): Promise<{ version: string; securityTypes: number[] }> {
    const version = (await this.read(12)).toString('latin1');
    this.send(Buffer.from('RFB 003.008\n'));
    const [count = 0] = await this.read(1);
    return { version, securityTypes: [...(await this.read(count))] };
  }

  /** Picks a security type (1 None, 2 VNC auth with `password`); true when the server accepts. */
  async authenticate(type: 1 | 2, password = ''): Promise<boolean> {
    this.send([type]);
    if (type === 2) this.send(vncAuthResponse(password, await this.read(16)));
    const result = await this.read(4);
    return result.length === 4 && result.readUInt32BE(0) === 0;
  }

  /** ClientInit (shared) and ServerInit: the framebuffer's size. */
  async init(): Promise<{ width: number; height: number }> {
    this.send([1]);
    const head = await this.read(24);
    await this.read(head.readUInt32BE(20)); // the desktop's name
    return { width: head.readUInt16BE(0), height: head.readUInt16BE(2) };
  }

  close(): void {
    this.ws.close();
  }
}

/**
 * VNC authentication (RFC 6143 §7.2.2): the challenge encrypted with DES, keyed by the first
 * 8 bytes of the password with each byte's bits reversed. Single DES is 3DES with three equal
 * keys (OpenSSL 3 keeps plain DES in its legacy provider only).
 */
export function vncAuthResponse(password: string, challenge: Buffer): Buffer {
  const key = Buffer.alloc(8);
  Buffer.from(password, 'latin1').copy(key, 0, 0, 8);
  for (let i = 0; i < 8; i++) {
    let b = key[i]!;
    let r = 0;
    for (let bit = 0; bit < 8; bit++, b >>= 1) r = (r << 1) | (b & 1);
    key[i] = r;
  }
  const cipher = createCipheriv('des-ede3-ecb', Buffer.concat([key, key, key]), null);
  cipher.setAutoPadding(false);
  return Buffer.concat([cipher.update(challenge), cipher.final()]);
}
