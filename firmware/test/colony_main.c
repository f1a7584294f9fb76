/* om_colony_vote as a program, on a colony header written by openmind.deploy (COLONY_HEADER).
 * Rows come from stdin (float32 little-endian, OM_COLONY_INPUTS each), or, with ROWS_HEADER
 * (om_rows[OM_ROWS][inputs]; for rv32imc under QEMU, where there is no stdin to speak of),
 * compiled in. One line per row on stdout: "class abstained vote_0 ... vote_{outputs-1}".
 * Built by `make colony-host COLONY_H=path.h` and `make colony-rv32-run COLONY_H=.. ROWS_H=..`. */
#include <stdio.h>

#include "om_core.h"
#include COLONY_HEADER
#ifdef ROWS_HEADER
#include ROWS_HEADER
#endif

static om_model_t members[OM_COLONY_MEMBERS];

static int vote_row(const float *x)
{
    int votes[OM_COLONY_OUTPUTS], abstained, i;
    int c = om_colony_vote(members, OM_COLONY_MEMBERS, OM_COLONY_CONFIDENCE, OM_COLONY_QUORUM,
                           x, votes, &abstained);
    if (c < 0) {
        printf("the members do not fit together\n");
        return 3;
    }
    printf("%d %d", c, abstained);
    for (i = 0; i < OM_COLONY_OUTPUTS; i++) printf(" %d", votes[i]);
    printf("\n");
    return 0;
}

int main(void)
{
    int i, rc;
    for (i = 0; i < OM_COLONY_MEMBERS; i++) {
        rc = om_model_parse(OM_COLONY_BLOBS[i], OM_COLONY_SIZES[i], &members[i]);
        if (rc != OM_MODEL_OK) {
            printf("member %d: %s\n", i, om_model_error(rc));
            return 2;
        }
    }
#ifdef ROWS_HEADER
    {
        unsigned r;
        for (r = 0; r < OM_ROWS; r++)
            if ((rc = vote_row(om_rows[r])) != 0) return rc;
    }
#else
    {
        float x[OM_COLONY_INPUTS];
        while (fread(x, sizeof x[0], OM_COLONY_INPUTS, stdin) == OM_COLONY_INPUTS)
            if ((rc = vote_row(x)) != 0) return rc;
    }
#endif
    return 0;
}
