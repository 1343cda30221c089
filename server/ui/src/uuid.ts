/**
 * A random UUID (version 4) for the ids the UI picks itself (update, event, reset and trigger
 * request ids). Not crypto.randomUUID: browsers define it only in secure contexts (https, or
 * http on localhost), and the UI is often opened on plain http at a host's address (`dex server`
 * listens on 0.0.0.0), where it is undefined. crypto.getRandomValues exists in every context.
 */
export function randomUuid(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6]! & 0x0f) | 0x40; // version 4
  bytes[8] = (bytes[8]! & 0x3f) | 0x80; // variant 10 (RFC 9562)
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
