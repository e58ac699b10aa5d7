/**
 * Which addresses a webhook may be sent to. Any http or https URL, loopback and private networks
 * included (a receiver beside the registry is common, and the tests run one on 127.0.0.1), except
 * the link-local ranges and cloud metadata endpoints, where a server-side request could read the
 * host's credentials (169.254.169.254 and friends). The URL is checked when a policy is saved and
 * the address it resolves to is checked again at every connection (guardedLookup), so that a name
 * that resolves to a metadata address later is refused too.
 */
import { lookup, type LookupAddress } from 'node:dns';
import { isIP, type LookupFunction } from 'node:net';

/** Host names of cloud metadata services (compared without a trailing dot, lower-case). */
const METADATA_HOSTNAMES = new Set(['metadata', 'metadata.google.internal', 'metadata.goog', 'instance-data', 'instance-data.ec2.internal', 'metadata.azure.internal']);

/** Metadata endpoints outside the link-local ranges: Alibaba Cloud, and AWS over IPv6. */
const METADATA_ADDRESSES = new Set(['100.100.100.200', 'fd00:ec2:0:0:0:0:0:254']);

export class WebhookAddressError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WebhookAddressError';
  }
}

function ipv4Octets(ip: string): number[] | undefined {
  const parts = ip.split('.');
  if (parts.length !== 4) return undefined;
  const octets = parts.map((p) => (/^[0-9]{1,3}$/.test(p) ? Number(p) : Number.NaN));
  return octets.every((o) => Number.isInteger(o) && o >= 0 && o <= 255) ? octets : undefined;
}

/** An IPv6 address as eight 16-bit groups (an embedded IPv4 tail becomes the last two), or undefined. */
function ipv6Groups(ip: string): number[] | undefined {
  let text = ip.toLowerCase();
  const zone = text.indexOf('%');
  if (zone >= 0) text = text.slice(0, zone);
  let tail: number[] = [];
  const lastColon = text.lastIndexOf(':');
  if (lastColon < 0) return undefined;
  const last = text.slice(lastColon + 1);
  if (last.includes('.')) {
    const v4 = ipv4Octets(last);
    if (!v4) return undefined;
    tail = [((v4[0] as number) << 8) | (v4[1] as number), ((v4[2] as number) << 8) | (v4[3] as number)];
    // "::ffff:" becomes "::ffff", "::" stays: the IPv4 tail replaced the last group.
    text = text.slice(0, lastColon + 1);
    if (!text.endsWith('::')) text = text.slice(0, -1);
  }
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const parse = (s: string) => (s === '' ? [] : s.split(':').map((g) => (/^[0-9a-f]{1,4}$/.test(g) ? Number.parseInt(g, 16) : Number.NaN)));
  const head = parse(halves[0] as string);
  const rest = halves.length === 2 ? parse(halves[1] as string) : [];
  const given = head.length + rest.length + tail.length;
  if ([...head, ...rest].some((g) => Number.isNaN(g))) return undefined;
  if (halves.length === 1 ? given !== 8 : given > 7) return undefined;
  return [...head, ...new Array<number>(8 - given).fill(0), ...rest, ...tail];
}

function ipv4Reason(o: number[]): string | undefined {
  const [a, b] = o as [number, number, number, number];
  if (a === 169 && b === 254) return 'a link-local address (where cloud metadata services answer)';
  if (a === 0) return 'an unspecified ("this network") address';
  if (a >= 224 && a <= 239) return 'a multicast address';
  if (o.every((x) => x === 255)) return 'the broadcast address';
  if (METADATA_ADDRESSES.has(o.join('.'))) return 'a cloud metadata address';
  return undefined;
}

/** Why a webhook may not connect to this IP address, or undefined when it may. */
export function blockedAddressReason(ip: string): string | undefined {
  const v4 = ipv4Octets(ip);
  if (v4) return ipv4Reason(v4);
  const g = ipv6Groups(ip);
  if (!g) return undefined;
  const [g0, g1, g2, g3, g4, g5, g6, g7] = g as [number, number, number, number, number, number, number, number];
  const embedded = [g6 >> 8, g6 & 0xff, g7 >> 8, g7 & 0xff];
  // IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d) and NAT64 (64:ff9b::a.b.c.d) carry an IPv4 address.
  if (g0 === 0 && g1 === 0 && g2 === 0 && g3 === 0 && g4 === 0 && (g5 === 0xffff || (g5 === 0 && (g6 !== 0 || g7 > 1)))) return ipv4Reason(embedded);
  if (g0 === 0x64 && g1 === 0xff9b && g2 === 0 && g3 === 0 && g4 === 0 && g5 === 0) return ipv4Reason(embedded);
  if (g.every((x) => x === 0)) return 'the unspecified address';
  if ((g0 & 0xffc0) === 0xfe80) return 'a link-local address';
  if ((g0 & 0xff00) === 0xff00) return 'a multicast address';
  if (METADATA_ADDRESSES.has(g.map((x) => x.toString(16)).join(':'))) return 'a cloud metadata address';
  return undefined;
}

/**
 * Checks a target address as a policy gives it and returns it as the URL parser normalised it
 * (so that 0xA9.254.169.254 is seen as 169.254.169.254). Throws WebhookAddressError saying why not.
 */
export function checkTargetAddress(address: string): string {
  if (address.trim() !== address || address === '') throw new WebhookAddressError('address must be an absolute http or https URL without surrounding spaces');
  let url: URL;
  try {
    url = new URL(address);
  } catch {
    throw new WebhookAddressError(`address "${address}" is not a valid URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new WebhookAddressError(`address must use http or https, not ${url.protocol.slice(0, -1)}`);
  if (url.username !== '' || url.password !== '') throw new WebhookAddressError('address must not carry credentials; send them with auth_header');
  if (url.hash !== '') throw new WebhookAddressError('address must not have a #fragment');
  const host = hostOf(url);
  if (host === '') throw new WebhookAddressError('address has no host');
  const reason = hostReason(host);
  if (reason) throw new WebhookAddressError(`address ${url.host} is ${reason}; webhooks may not be sent there`);
  return url.toString();
}

/** The host of a URL without IPv6 brackets or a trailing dot, lower-case. */
export function hostOf(url: URL): string {
  let host = url.hostname.toLowerCase();
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  if (host.endsWith('.')) host = host.slice(0, -1);
  return host;
}

function hostReason(host: string): string | undefined {
  if (isIP(host) !== 0) return blockedAddressReason(host);
  if (METADATA_HOSTNAMES.has(host)) return 'a cloud metadata service';
  return undefined;
}

/**
 * Re-checks a URL at delivery time (the rules may be stricter than when the policy was saved);
 * returns why it is refused, or undefined.
 */
export function deliveryRefusal(address: string): string | undefined {
  try {
    checkTargetAddress(address);
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

/**
 * A dns.lookup for http.request that refuses names resolving to a blocked address: the check at
 * connection time that a name cannot dodge by resolving elsewhere after the policy was saved.
 */
export const guardedLookup: LookupFunction = (hostname, options, callback) => {
  lookup(hostname, { ...options, all: true }, (err, addresses: LookupAddress[]) => {
    if (err) {
      callback(err, '', 0);
      return;
    }
    for (const { address } of addresses) {
      const reason = blockedAddressReason(address);
      if (reason) {
        const refused = Object.assign(new Error(`${hostname} resolves to ${address}, ${reason}; webhooks may not be sent there`), { code: 'EWEBHOOKBLOCKED' }) as NodeJS.ErrnoException;
        callback(refused, '', 0);
        return;
      }
    }
    if (options.all) {
      (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, addresses);
      return;
    }
    const first = addresses[0];
    if (!first) {
      callback(Object.assign(new Error(`${hostname} has no address`), { code: 'ENOTFOUND' }) as NodeJS.ErrnoException, '', 0);
      return;
    }
    callback(null, first.address, first.family);
  });
};
