// The key server's tunables, with their defaults.

export interface KeyServerSettings {
  /** How long a key bundle is valid; clients refresh before (default 3600). */
  readonly bundleTtlSeconds: number
  /**
   * Most writers a bundle lists for one group (default 64). A group with more is listed with
   * none but the recipient itself; readers fetch the others' signed records by key id on first
   * sight (`writerRecordFor`), so a bundle does not grow with the writers.
   */
  readonly bundleInlineWriters: number
  /** How long a writer record is valid (default 300): bounds how late narrowed rights reach readers. */
  readonly writerRecordTtlSeconds: number
  /** How long before activation a scheduled epoch is handed out (default 30). */
  readonly rotationLeadSeconds: number
  /** How long a replaced epoch stays readable, unless the group sets its own (default 300). */
  readonly defaultGraceSeconds: number
  readonly enrollmentTokenTtlSeconds: number
  readonly clientCertificateValidityDays: number
  /**
   * How long after its token was used an enrollment may be repeated, answered as the first
   * time, for a device whose answer was lost (default 86400).
   */
  readonly enrollmentRepeatSeconds: number
  /** Signed requests one principal may make per second, after a burst of principalRequestBurst (default 5). */
  readonly principalRequestsPerSecond: number
  readonly principalRequestBurst: number
  /** Failed authentications one address (IPv6: one /64) may make per minute before 429 (default 30). */
  readonly failedAuthPerAddressPerMinute: number
  /**
   * How long a revocation stays on the signed revocation list (default 86400; at least the
   * bundle lifetime plus 60 s is used). Clients refuse bundles issued before the list's
   * watermark, so an older entry can never be needed (issue 14, cliff 1; docs/decisions.md).
   */
  readonly revocationRetentionSeconds: number
}

export const DEFAULT_SETTINGS: KeyServerSettings = {
  bundleTtlSeconds: 3600,
  bundleInlineWriters: 64,
  writerRecordTtlSeconds: 300,
  rotationLeadSeconds: 30,
  defaultGraceSeconds: 300,
  enrollmentTokenTtlSeconds: 86_400,
  clientCertificateValidityDays: 365,
  enrollmentRepeatSeconds: 86_400,
  principalRequestsPerSecond: 5,
  principalRequestBurst: 50,
  failedAuthPerAddressPerMinute: 30,
  revocationRetentionSeconds: 86_400,
}
