/*
 * Microseconds per seal, verify and open of a 64-byte payload (suite 1, ordinary ids), on this
 * machine: the numbers scripts/footprint.sh prints.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../tests/testutil.h"

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

int main(int argc, char **argv) {
    if (smqtt_init() != SMQTT_OK) return 1;
    int n = argc > 1 ? atoi(argv[1]) : 2000;
    uint8_t seed[32] = {1}, sk[64], payload[64] = {0}, env[256], work[512], plain[128];
    /* the receiver holds the one epoch key and the one writer */
    tu_keys k = {.group = 7, .epoch = 300, .sender = 1000, .suite = 1, .epoch_key = {7}};
    crypto_sign_seed_keypair(k.public_key, sk, seed);
    const char *topic = "home/hall/thermostat/temp";
    size_t tl = strlen(topic), env_len = 0, pl = 0;
    smqtt_seal_params p;
    memset(&p, 0, sizeof p);
    p.suite = k.suite, p.group = k.group, p.epoch = k.epoch, p.sender = k.sender, p.sent_at = 1790000000;
    p.epoch_key = k.epoch_key, p.signing_key = sk;
    double t0 = now_us();
    for (int i = 0; i < n; i++) {
        p.seq = (uint64_t)i + 100000;
        if (smqtt_envelope_seal(env, sizeof env, &env_len, &p, (const uint8_t *)topic, tl, payload, sizeof payload, work,
                                sizeof work) != SMQTT_OK)
            return 1;
    }
    double seal = (now_us() - t0) / n;
    smqtt_keyring keys = tu_keyring(&k, 0);
    smqtt_open_options o;
    memset(&o, 0, sizeof o);
    o.keys = &keys;
    t0 = now_us();
    for (int i = 0; i < n; i++)
        if (smqtt_envelope_verify(NULL, env, env_len, (const uint8_t *)topic, tl, &o, work, sizeof work) != SMQTT_OK) return 1;
    double verify = (now_us() - t0) / n;
    t0 = now_us();
    for (int i = 0; i < n; i++)
        if (smqtt_envelope_open(plain, sizeof plain, &pl, NULL, env, env_len, (const uint8_t *)topic, tl, &o, work,
                                sizeof work) != SMQTT_OK)
            return 1;
    double open = (now_us() - t0) / n;
    printf("64 B payload, %zu B envelope, %d runs: seal %.1f us, verify %.1f us, open %.1f us\n", env_len, n, seal, verify,
           open);
    return 0;
}
