/* Internal helpers shared by the library's files; not part of the API. */
#ifndef SMQTT_INTERNAL_H
#define SMQTT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "smqtt/smqtt.h"

/* HMAC-SHA256 of the concatenation of up to three parts (NULL parts are skipped). */
void smqtt__hmac3(uint8_t out[32], const uint8_t *key, size_t key_len, const uint8_t *a, size_t a_len,
                  const uint8_t *b, size_t b_len, const uint8_t *c, size_t c_len);

/* Whether `bytes` is well-formed UTF-8 without U+0000 (MQTT 5 §1.5.4 text). */
int smqtt__is_mqtt_text(const uint8_t *bytes, size_t len);

/* Whether `text` is one JSON value under RFC 8259's grammar, with no \\u0000 and no lone surrogate. */
int smqtt__json_is_strict(const uint8_t *text, size_t len);

#endif
