/*
 * The key server over HTTPS (libcurl): the enrollment request and signed requests
 * (docs/documents.md §9–§10). The signing is the library's (smqtt_request_sign); this file only
 * moves bytes.
 */
#ifndef LINUX_DEVICE_KEY_SERVER_H
#define LINUX_DEVICE_KEY_SERVER_H

#include <stddef.h>

#include "storage.h"

typedef struct key_server {
    const char *url;     /* https://host:port[/prefix] */
    const char *ca_file; /* the deployment CA; NULL: the system roots */
} key_server;

/* An answer: the HTTP status and the body, NUL-terminated (free with key_server_answer_free). */
typedef struct key_server_answer {
    long status; /* 0: no answer (TLS or network failure; `body` holds curl's reason) */
    char *body;
    size_t len;
} key_server_answer;

/* Sends `body` (JSON, may be NULL for GET). With `signer`, the request carries the four smqtt-*
 * headers made by smqtt_request_sign for that identity. 0 when an answer came back, -1 otherwise. */
int key_server_call(const key_server *server, const char *method, const char *route, const char *body,
                    const device_identity *signer, key_server_answer *answer);

/* The error code of an error answer ({"error":{"code":"ERR_…"}}), or "HTTP <status>". */
const char *key_server_error_code(const key_server_answer *answer, char *buf, size_t cap);

void key_server_answer_free(key_server_answer *answer);

#endif
