/**
 * The gRPC target for one or several server addresses.
 *
 * grpc-js resolves one target per channel, and its resolvers cannot mix: `ipv4:a:1,b:2` takes only
 * IPv4 literals, `ipv6:[a]:1,[b]:2` only IPv6 literals, `dns:host:port` one name (all of whose
 * records it uses). So a list of IP addresses of one family, or one host name, becomes one channel
 * that spreads calls over every address and moves on when one goes away; anything else (two host
 * names, IPv4 next to IPv6, a name next to an IP) is refused with what to give instead. A DNS name
 * with one record per server is the way to name several servers by name.
 */
import { isIP } from "node:net";

/** The port `dex dev` and `dex server` listen on by default; an address without a port gets it. */
export const DEFAULT_PORT = 7460;

export interface Target {
  /** What grpc-js connects to. */
  readonly target: string;
  /** The addresses, as given, for logs and errors ("a:1,b:2"). */
  readonly display: string;
}

interface HostPort {
  host: string;
  port: number;
  family: 0 | 4 | 6;
}

/**
 * One entry: "host:port", "[v6]:port", or a host alone (port 7460). A target with a scheme
 * ("dns:…", "ipv4:…", "unix:…") passes through untouched, for what grpc-js supports beyond this.
 */
function parse(address: string, what: string): HostPort {
  const text = address.trim();
  let host: string;
  let port = String(DEFAULT_PORT);
  const bracketed = /^\[([^\]]+)\](?::(.*))?$/.exec(text);
  if (bracketed) {
    host = bracketed[1]!;
    if (bracketed[2] !== undefined) port = bracketed[2];
  } else if (isIP(text) === 6) {
    host = text; // a bare IPv6 literal: its colons are not a port separator
  } else {
    const colon = text.lastIndexOf(":");
    host = colon < 0 ? text : text.slice(0, colon);
    if (colon >= 0) port = text.slice(colon + 1);
  }
  const portNumber = Number(port);
  if (host === "" || !/^\d+$/.test(port) || portNumber < 1 || portNumber > 65_535) {
    throw new TypeError(`${what}: ${JSON.stringify(address)} is not host:port (e.g. 127.0.0.1:7460, [::1]:7460, dex.internal:7460)`);
  }
  const family = isIP(host);
  if (family === 0 && host.includes(":")) throw new TypeError(`${what}: ${JSON.stringify(address)}: write an IPv6 address in brackets, [${host}]:${port}`);
  return { host, port: portNumber, family: family as 0 | 4 | 6 };
}

/** `what` names the source (the `address` option, DEX_ADDRESS) in error messages. */
export function channelTarget(addresses: readonly string[], what: string): Target {
  const list = addresses.map((a) => a.trim()).filter((a) => a !== "");
  if (list.length === 0) throw new TypeError(`${what} is empty: give host:port, or several separated by commas`);
  const display = list.join(",");
  if (list.length === 1 && /^(dns|ipv4|ipv6|unix|unix-abstract|vsock):/.test(list[0]!) && !/^[^:]+:\d+$/.test(list[0]!)) {
    return { target: list[0]!, display }; // "dns:…", "ipv4:…", "unix:…": grpc-js's own syntax
  }
  const parsed = list.map((a) => parse(a, what));
  if (parsed.length === 1) {
    const { host, port, family } = parsed[0]!;
    return { target: family === 6 ? `ipv6:[${host}]:${port}` : family === 4 ? `ipv4:${host}:${port}` : `dns:${host}:${port}`, display };
  }
  const families = new Set(parsed.map((p) => p.family));
  if (families.size === 1 && families.has(4)) return { target: `ipv4:${parsed.map((p) => `${p.host}:${p.port}`).join(",")}`, display };
  if (families.size === 1 && families.has(6)) return { target: `ipv6:${parsed.map((p) => `[${p.host}]:${p.port}`).join(",")}`, display };
  throw new TypeError(
    `${what}: ${display} mixes ${families.has(0) ? "host names" : "IPv4 and IPv6"}; one connection takes IP addresses of one ` +
      "family, or a single host name (one DNS name with a record per server spreads over all of them)",
  );
}
