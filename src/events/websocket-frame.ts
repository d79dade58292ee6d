/**
 * A WebSocket text frame from server to client (RFC 6455 §5.2), encoded once per event for every subscriber.
 *
 * `ws` frames each `send` for its socket: a header, a copy of a string into UTF-8, two writes. The event stream
 * writes the same event to many sockets, and a server's frames are not masked, so their bytes are the same on
 * every socket: the stream encodes each event once, here, and writes that buffer to each subscriber's TCP
 * socket (see `docs/events.md`, Cost). The payload is the event's JSON, which server-sent events reuse as is.
 */

/** FIN set, opcode 1 (text): a whole message in one frame. */
const FIN_TEXT = 0x81;
/** Payload lengths up to this fit the 7 bits of the second byte. */
const MAX_SHORT_LENGTH = 125;
/** The second byte's values that announce a 16-bit and a 64-bit length after it. */
const LENGTH_16 = 126;
const LENGTH_64 = 127;

/** An encoded frame, and where its payload (the UTF-8 text) starts in it. */
export interface TextFrame {
  frame: Buffer;
  payloadStart: number;
}

/** Encodes `text` as one unmasked text frame. */
export function encodeTextFrame(text: string): TextFrame {
  const length = Buffer.byteLength(text);
  const payloadStart = length <= MAX_SHORT_LENGTH ? 2 : length <= 0xffff ? 4 : 10;
  const frame = Buffer.allocUnsafe(payloadStart + length);
  frame[0] = FIN_TEXT;
  if (payloadStart === 2) {
    frame[1] = length;
  } else if (payloadStart === 4) {
    frame[1] = LENGTH_16;
    frame.writeUInt16BE(length, 2);
  } else {
    frame[1] = LENGTH_64;
    frame.writeUInt32BE(Math.floor(length / 2 ** 32), 2);
    frame.writeUInt32BE(length >>> 0, 6);
  }
  frame.write(text, payloadStart, "utf8");
  return { frame, payloadStart };
}
