// The MQTT topics the key server pushes on. Brokers running the SMQTT plugin let only the key
// server publish there, only principal <id> read its own topic, and only brokers read theirs.
// Contents are signed (and bundles sealed), so a plain third-party broker leaks nothing either.
// This file is the one rule for what a control topic is, for topics and for filters alike.
import { filtersIntersect } from './topic-filter.js'

/** Prefix of every SMQTT control topic. */
export const CONTROL_TOPIC_PREFIX = 'smqtt/control/'

/** Where principal `id` receives its new key bundles. */
export function principalControlTopic(id: string): string {
  return `${CONTROL_TOPIC_PREFIX}principals/${id}`
}

/** Where broker plugins receive change notices (revocations, policy, epochs). */
export const BROKER_CONTROL_TOPIC = `${CONTROL_TOPIC_PREFIX}brokers`

/**
 * The filter matching exactly the control topics: every topic under the prefix (at least three
 * levels), but not the parent `smqtt/control`, which `smqtt/control/#` would also match.
 */
export const CONTROL_TOPICS_FILTER = `${CONTROL_TOPIC_PREFIX}+/#`

/** True for any SMQTT control topic (the ACL reserves them); the same set as {@link CONTROL_TOPICS_FILTER}. */
export function isControlTopic(topic: string): boolean {
  return topic.startsWith(CONTROL_TOPIC_PREFIX)
}

/**
 * True when the topic filter (or topic) matches at least one control topic.
 *
 * @example
 * ```ts
 * filterReachesControlTopic('+/+') // false: no control topic has two levels
 * filterReachesControlTopic('+/+/+') // true: smqtt/control/brokers
 * filterReachesControlTopic('smqtt/#') // true
 * ```
 */
export function filterReachesControlTopic(filter: string): boolean {
  return filtersIntersect(filter, CONTROL_TOPICS_FILTER)
}
