// Per-address limits (connection caps, rate limits, bans) on the key server and the broker count
// by this key, so one subscriber's IPv6 block cannot dodge them by changing addresses within it.

/**
 * The key a per-address limit counts by: an IPv4 address alone (IPv4-mapped IPv6 ones included);
 * an IPv6 address by its /64, the block one subscriber usually holds.
 *
 * @example
 * ```ts
 * addressKey('2001:db8::1') // '2001:db8:0:0::/64'
 * addressKey('::ffff:192.0.2.7') // '192.0.2.7'
 * ```
 */
export function addressKey(address: string): string {
  const plain = address.replace(/%.*$/, '').toLowerCase()
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(plain)
  if (mapped) return mapped[1] as string
  if (!plain.includes(':')) return plain
  const [head = '', tail] = plain.split('::')
  const left = head ? head.split(':') : []
  const right = tail ? tail.split(':') : []
  const groups = tail === undefined ? left : [...left, ...Array(8 - left.length - right.length).fill('0'), ...right]
  return `${groups
    .slice(0, 4)
    .map((g) => Number.parseInt(g, 16).toString(16))
    .join(':')}::/64`
}
