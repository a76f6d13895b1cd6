/*
 * loopdetect.c
 *    N+1 detection within a scope; see loopdetect.h.
 */
#include "loopdetect.h"

#include <string.h>

void loop_scope_reset(loop_scope_t *sc)
{
    sc->n = 0;
    sc->last = 0;
}

static loop_slot_t *slot_for(loop_scope_t *sc, uint64_t fingerprint)
{
    for (int i = 0; i < sc->n; i++)
        if (sc->slots[i].fingerprint == fingerprint)
            return &sc->slots[i];
    if (sc->n == LOOP_SLOTS)
        return NULL;
    loop_slot_t *slot = &sc->slots[sc->n++];
    memset(slot, 0, sizeof(*slot));
    slot->fingerprint = fingerprint;
    slot->preceding = sc->last != fingerprint ? sc->last : 0;
    return slot;
}

int loop_scope_run(loop_scope_t *sc, uint64_t fingerprint, uint64_t params, int threshold,
                   uint64_t *preceding)
{
    loop_slot_t *slot = slot_for(sc, fingerprint);
    sc->last = fingerprint;
    if (slot == NULL || (slot->count > 0 && slot->last_params == params))
        return 0;
    slot->count++;
    slot->last_params = params;
    if (slot->count < threshold || slot->reported)
        return 0;
    slot->reported = true;
    *preceding = slot->preceding;
    return slot->count;
}
