/*
 * A strict RFC 8259 grammar check run before cJSON builds a tree: cJSON is lenient where SMQTT
 * documents must not be (numbers such as "01" or "1.", raw control characters in strings), and
 * it cuts a string at a \u0000 escape, which would hide a forbidden character. This pass refuses
 * all of those, and a lone-surrogate escape, without allocating.
 */
#include <string.h>

#include "internal.h"

typedef struct cursor {
    const uint8_t *s;
    size_t n;
    size_t i;
    unsigned depth;
} cursor;

#define MAX_DEPTH 64u

static void skip_ws(cursor *c) {
    while (c->i < c->n && (c->s[c->i] == ' ' || c->s[c->i] == '\t' || c->s[c->i] == '\n' || c->s[c->i] == '\r')) c->i++;
}

static int hex4(cursor *c, unsigned *value) {
    if (c->n - c->i < 4) return -1;
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        uint8_t h = c->s[c->i++];
        v <<= 4;
        if (h >= '0' && h <= '9') v |= (unsigned)(h - '0');
        else if (h >= 'a' && h <= 'f') v |= (unsigned)(h - 'a' + 10);
        else if (h >= 'A' && h <= 'F') v |= (unsigned)(h - 'A' + 10);
        else return -1;
    }
    *value = v;
    return 0;
}

static int string(cursor *c) {
    if (c->i >= c->n || c->s[c->i] != '"') return -1;
    c->i++;
    while (c->i < c->n) {
        uint8_t ch = c->s[c->i++];
        if (ch == '"') return 0;
        if (ch < 0x20) return -1;
        if (ch != '\\') continue;
        if (c->i >= c->n) return -1;
        uint8_t e = c->s[c->i++];
        if (e == 'u') {
            unsigned u;
            if (hex4(c, &u) != 0) return -1;
            if (u == 0) return -1; /* U+0000: forbidden in every SMQTT string, and cJSON would cut there */
            if (u >= 0xdc00 && u <= 0xdfff) return -1; /* lone low surrogate */
            if (u >= 0xd800 && u <= 0xdbff) {
                unsigned low;
                if (c->n - c->i < 6 || c->s[c->i] != '\\' || c->s[c->i + 1] != 'u') return -1;
                c->i += 2;
                if (hex4(c, &low) != 0 || low < 0xdc00 || low > 0xdfff) return -1;
            }
        } else if (!strchr("\"\\/bfnrt", e) || e == 0) {
            return -1;
        }
    }
    return -1;
}

static int digits(cursor *c) {
    size_t start = c->i;
    while (c->i < c->n && c->s[c->i] >= '0' && c->s[c->i] <= '9') c->i++;
    return c->i > start ? 0 : -1;
}

static int number(cursor *c) {
    if (c->i < c->n && c->s[c->i] == '-') c->i++;
    if (c->i >= c->n) return -1;
    if (c->s[c->i] == '0') c->i++;
    else if (digits(c) != 0) return -1;
    if (c->i < c->n && c->s[c->i] == '.') {
        c->i++;
        if (digits(c) != 0) return -1;
    }
    if (c->i < c->n && (c->s[c->i] == 'e' || c->s[c->i] == 'E')) {
        c->i++;
        if (c->i < c->n && (c->s[c->i] == '+' || c->s[c->i] == '-')) c->i++;
        if (digits(c) != 0) return -1;
    }
    return 0;
}

static int literal(cursor *c, const char *word) {
    size_t len = strlen(word);
    if (c->n - c->i < len || memcmp(c->s + c->i, word, len) != 0) return -1;
    c->i += len;
    return 0;
}

static int value(cursor *c);

static int container(cursor *c, uint8_t close) {
    if (++c->depth > MAX_DEPTH) return -1;
    c->i++; /* the opening bracket */
    skip_ws(c);
    if (c->i < c->n && c->s[c->i] == close) {
        c->i++;
        c->depth--;
        return 0;
    }
    for (;;) {
        skip_ws(c);
        if (close == '}') {
            if (string(c) != 0) return -1;
            skip_ws(c);
            if (c->i >= c->n || c->s[c->i++] != ':') return -1;
            skip_ws(c);
        }
        if (value(c) != 0) return -1;
        skip_ws(c);
        if (c->i >= c->n) return -1;
        uint8_t ch = c->s[c->i++];
        if (ch == close) break;
        if (ch != ',') return -1;
    }
    c->depth--;
    return 0;
}

static int value(cursor *c) {
    if (c->i >= c->n) return -1;
    switch (c->s[c->i]) {
    case '{': return container(c, '}');
    case '[': return container(c, ']');
    case '"': return string(c);
    case 't': return literal(c, "true");
    case 'f': return literal(c, "false");
    case 'n': return literal(c, "null");
    default: return number(c);
    }
}

int smqtt__json_is_strict(const uint8_t *text, size_t len) {
    cursor c = {text, len, 0, 0};
    skip_ws(&c);
    if (value(&c) != 0) return 0;
    skip_ws(&c);
    return c.i == len;
}
