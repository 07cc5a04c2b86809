/* The key server over HTTPS with libcurl (key_server.h). */
#define _POSIX_C_SOURCE 200809L

#include "key_server.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_ANSWER_BYTES (2u * 1024u * 1024u) /* a key bundle is at most 1 MiB of payload */

static size_t collect(char *data, size_t size, size_t count, void *userdata) {
    key_server_answer *answer = userdata;
    size_t n = size * count;
    if (answer->len + n > MAX_ANSWER_BYTES) return 0; /* makes curl fail the transfer */
    char *grown = realloc(answer->body, answer->len + n + 1);
    if (grown == NULL) return 0;
    memcpy(grown + answer->len, data, n);
    answer->body = grown;
    answer->len += n;
    answer->body[answer->len] = '\0';
    return n;
}

/* The path the request is signed over: the URL's path prefix (if any) followed by the route. */
static int signed_path(char *out, size_t cap, const char *url, const char *route) {
    const char *host = strstr(url, "://");
    const char *prefix = host != NULL ? strchr(host + 3, '/') : NULL;
    size_t prefix_len = prefix != NULL ? strlen(prefix) : 0;
    while (prefix_len > 0 && prefix[prefix_len - 1] == '/') prefix_len--;
    int n = snprintf(out, cap, "%.*s%s", (int)prefix_len, prefix != NULL ? prefix : "", route);
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

static struct curl_slist *signature_headers(struct curl_slist *headers, const char *method, const char *path,
                                            const char *body, const device_identity *signer) {
    uint8_t nonce[16];
    randombytes_buf(nonce, sizeof nonce);
    smqtt_request_headers signed_headers;
    size_t body_len = body != NULL ? strlen(body) : 0;
    if (smqtt_request_sign(&signed_headers, method, path, (const uint8_t *)body, body_len, (uint64_t)time(NULL), nonce,
                           signer->signing_key) != SMQTT_OK)
        return NULL;
    char line[1024];
    snprintf(line, sizeof line, "smqtt-principal: %s", signer->id);
    headers = curl_slist_append(headers, line);
    snprintf(line, sizeof line, "smqtt-timestamp: %s", signed_headers.timestamp);
    headers = curl_slist_append(headers, line);
    snprintf(line, sizeof line, "smqtt-nonce: %s", signed_headers.nonce);
    headers = curl_slist_append(headers, line);
    snprintf(line, sizeof line, "smqtt-signature: %s", signed_headers.signature);
    return curl_slist_append(headers, line);
}

int key_server_call(const key_server *server, const char *method, const char *route, const char *body,
                    const device_identity *signer, key_server_answer *answer) {
    char url[2048], path[SMQTT_REQUEST_MAX_PATH_BYTES + 1];
    memset(answer, 0, sizeof *answer);
    if (snprintf(url, sizeof url, "%s%s", server->url, route) >= (int)sizeof url ||
        signed_path(path, sizeof path, server->url, route) != 0)
        return -1;
    CURL *curl = curl_easy_init();
    if (curl == NULL) return -1;
    struct curl_slist *headers = NULL;
    if (body != NULL) headers = curl_slist_append(headers, "content-type: application/json");
    if (signer != NULL) {
        struct curl_slist *with_signature = signature_headers(headers, method, path, body, signer);
        if (with_signature == NULL) {
            curl_slist_free_all(headers);
            curl_easy_cleanup(curl);
            return -1;
        }
        headers = with_signature;
    }
    char curl_error[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    if (body != NULL) curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "https"); /* never plain HTTP */
    curl_easy_setopt(curl, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    if (server->ca_file != NULL) {
        /* The deployment CA alone: the system roots are not trusted then (docs/documents.md §9.2). */
        curl_easy_setopt(curl, CURLOPT_CAINFO, server->ca_file);
        curl_easy_setopt(curl, CURLOPT_CAPATH, NULL);
    }
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, 15L);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, answer);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, curl_error);
    CURLcode done = curl_easy_perform(curl);
    if (done == CURLE_OK) curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &answer->status);
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    if (done != CURLE_OK) {
        free(answer->body);
        answer->body = strdup(curl_error[0] != '\0' ? curl_error : curl_easy_strerror(done));
        answer->len = answer->body != NULL ? strlen(answer->body) : 0;
        answer->status = 0;
        return -1;
    }
    if (answer->body == NULL) answer->body = calloc(1, 1);
    return answer->body != NULL ? 0 : -1;
}

const char *key_server_error_code(const key_server_answer *answer, char *buf, size_t cap) {
    cJSON *json = cJSON_Parse(answer->body != NULL ? answer->body : "");
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(json, "error"), "code");
    if (cJSON_IsString(code)) snprintf(buf, cap, "%s", code->valuestring);
    else if (answer->status == 0) snprintf(buf, cap, "no answer: %s", answer->body != NULL ? answer->body : "");
    else snprintf(buf, cap, "HTTP %ld", answer->status);
    cJSON_Delete(json);
    return buf;
}

void key_server_answer_free(key_server_answer *answer) {
    free(answer->body);
    memset(answer, 0, sizeof *answer);
}
