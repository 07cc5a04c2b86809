/*
 * The C error enum maps 1:1 to the codes of docs/errors.md: every table row's code, in order,
 * is smqtt_err_code_str(1 .. SMQTT_ERR_CODE_COUNT), and there are no others.
 */
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    char path[4096];
    snprintf(path, sizeof path, "%s/docs/errors.md", argv[1]);
    char *text = tu_read_file(path, NULL);
    CHECK(text != NULL, "cannot read %s", path);
    if (text == NULL) return tu_finish("errors");
    int index = 0;
    for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        if (strncmp(line, "| `ERR_", 7) != 0) continue;
        char *start = line + 3;
        char *end = strchr(start, '`');
        if (end == NULL) continue;
        *end = '\0';
        index++;
        const char *mine = smqtt_err_code_str(index);
        CHECK(mine != NULL && strcmp(mine, start) == 0, "docs row %d is %s, C has %s", index, start,
              mine != NULL ? mine : "(none)");
    }
    CHECK(index == SMQTT_ERR_CODE_COUNT, "docs list %d codes, C has %d", index, SMQTT_ERR_CODE_COUNT);
    CHECK(smqtt_err_code_str(SMQTT_ERR_CODE_COUNT + 1) == NULL, "no code past the list");
    CHECK(strcmp(smqtt_err_code_str(SMQTT_OK), "OK") == 0, "OK");
    CHECK(strcmp(smqtt_err_code_str(SMQTT_ERR_ENVELOPE_MALFORMED), "ERR_ENVELOPE_MALFORMED") == 0, "malformed");
    CHECK(strcmp(smqtt_err_code_str(SMQTT_ERR_NO_KEY_GROUP), "ERR_NO_KEY_GROUP") == 0, "last");
    CHECK(strncmp(smqtt_err_code_str(SMQTT_ERR_INVALID_ARGUMENT), "ERR_", 4) != 0, "C-only codes are not ERR_");
    CHECK(strncmp(smqtt_err_code_str(SMQTT_ERR_BUFFER_TOO_SMALL), "ERR_", 4) != 0, "C-only codes are not ERR_");
    free(text);
    printf("errors: %d codes of docs/errors.md matched\n", index);
    return tu_finish("errors");
}
