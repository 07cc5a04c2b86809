// One rule for what a control topic is: the topic test (per PUBLISH) and the filter test (per
// SUBSCRIBE and delivery) must agree on every concrete topic.
import fc from 'fast-check'
import { describe, expect, test } from 'vitest'
import {
  BROKER_CONTROL_TOPIC,
  filterReachesControlTopic,
  isControlTopic,
  principalControlTopic,
} from '../src/control-topics.js'
import { topicMatches } from '../src/topic-filter.js'

describe('control topics', () => {
  test.each([
    ['+/+', false], // no control topic has two levels
    ['smqtt/control', false], // the parent is not a control topic
    ['smqtt/+', false],
    ['+/control', false],
    ['home/#', false],
    ['$SYS/#', false],
    ['+/+/+', true], // smqtt/control/brokers
    ['#', true],
    ['+/#', true],
    ['smqtt/#', true],
    ['smqtt/control/#', true],
    ['smqtt/+/brokers', true],
    ['+/+/principals/+', true],
    ['smqtt/control/principals/app-1', true],
    [BROKER_CONTROL_TOPIC, true],
  ])('filter %s reaches a control topic: %s', (filter, reaches) => {
    expect(filterReachesControlTopic(filter)).toBe(reaches)
  })

  test('the known control topics are control topics, their parent is not', () => {
    expect(isControlTopic(BROKER_CONTROL_TOPIC)).toBe(true)
    expect(isControlTopic(principalControlTopic('app-1'))).toBe(true)
    expect(isControlTopic('smqtt/control')).toBe(false)
    expect(isControlTopic('smqtt/controls/x')).toBe(false)
  })

  test('on concrete topics the filter rule and the topic rule agree', () => {
    const level = fc.constantFrom('smqtt', 'control', 'brokers', 'principals', 'x', '')
    const topic = fc.array(level, { minLength: 1, maxLength: 5 }).map((levels) => levels.join('/'))
    fc.assert(
      fc.property(topic, (t) => {
        expect(filterReachesControlTopic(t)).toBe(isControlTopic(t))
      }),
      { seed: 12, numRuns: 2_000 },
    )
  })

  test('a filter reaches a control topic exactly when it matches one of a sample of them', () => {
    const sample = ['smqtt/control/brokers', 'smqtt/control/principals/app-1', 'smqtt/control/', 'smqtt/control/a/b/c']
    for (const filter of ['+/+/+', '+/+/+/+', '+/+/+/+/+', 'smqtt/control/+', '+/+', 'a/#', '+/control/#'])
      expect(filterReachesControlTopic(filter)).toBe(sample.some((t) => topicMatches(filter, t)))
  })
})
