// `npm run fuzz:http` (long: 20,000 hostile HTTPS requests to the real key server by default;
// FUZZ_RUNS to change, FUZZ_SEED to replay, FUZZ_CONCURRENCY for parallel requests). Prints a
// markdown report for docs/reliability.md. Exits 1 if an answer broke the contract (5xx, untyped
// 4xx, 2xx without authorization, no answer), /v1/health failed after a batch, a prototype was
// polluted, or a legitimate enrollment and bundle fetch failed at the end.
import { createEnrollmentRequest, generateIdentity } from '@smqtt/core'
import { startHarness } from '@smqtt/test-kit/keyserver'
import { fuzzSettings, lazyBatches, runToExitCode } from './_campaign.js'
import { FUZZ_DEVICE, FUZZ_SETTINGS, hostileRequest, markdownReport, runCampaign } from './_http-requests.js'

const { runs, seed, concurrency } = fuzzSettings({ runs: 20_000, concurrency: 8 })

console.log(`key server HTTP API: ${runs} requests, seed ${seed}, ${concurrency} at a time`)
const h = await startHarness({ settings: FUZZ_SETTINGS })
h.clock.now = Math.floor(Date.now() / 1000)
await runToExitCode(h, async () => {
  const { identity } = await h.enroll(FUZZ_DEVICE, ['thermostat'])
  const principalsBefore = (await h.store.listPrincipals()).length
  const report = await runCampaign({ h, device: identity }, lazyBatches(hostileRequest, runs, seed, 500), {
    concurrency,
    onBatch: (done) => process.stderr.write(`\r${done}/${runs}`),
  })
  process.stderr.write('\n')
  console.log(`\n${markdownReport(report)}`)
  for (const problem of report.problems) console.error(problem)

  const polluted = ({} as Record<string, unknown>).polluted !== undefined
  const fresh = generateIdentity('after-fuzz')
  const token = await h.admin('POST', '/v1/admin/enrollment-tokens', { principalId: 'after-fuzz', roles: ['app'] })
  const enrolled = await h.request('POST', '/v1/enroll', {
    body: createEnrollmentRequest(fresh, (token.body as { token: string }).token),
  })
  const bundle = await h.device(fresh, 'GET', '/v1/bundle')
  const principalsAfter = (await h.store.listPrincipals()).length
  console.log(
    `\nAfterwards: Object.prototype polluted: ${polluted ? 'YES' : 'no'}; legitimate enrollment ${enrolled.status}, ` +
      `bundle fetch ${bundle.status}; principals ${principalsBefore} before, ${principalsAfter} after (one enrolled since).`,
  )
  return (
    report.problemCount > 0 ||
    polluted ||
    enrolled.status !== 200 ||
    bundle.status !== 200 ||
    principalsAfter !== principalsBefore + 1
  )
})
