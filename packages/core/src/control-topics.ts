// The MQTT topics the key server pushes on. Brokers running the SMQTT plugin let only the key
// server publish there, only principal <id> read its own topic, and only brokers read theirs.
// Contents are signed (and bundles sealed), so a plain third-party broker leaks nothing either.

/** Prefix of every SMQTT control topic. */
export const CONTROL_TOPIC_PREFIX = 'smqtt/control/'

/** Where principal `id` receives its new key bundles. */
export function principalControlTopic(id: string): string {
  return `${CONTROL_TOPIC_PREFIX}principals/${id}`
}

/** Where broker plugins receive change notices (revocations, policy, epochs). */
export const BROKER_CONTROL_TOPIC = `${CONTROL_TOPIC_PREFIX}brokers`

/** True for any SMQTT control topic (the ACL reserves them). */
export function isControlTopic(topic: string): boolean {
  return topic.startsWith(CONTROL_TOPIC_PREFIX)
}
