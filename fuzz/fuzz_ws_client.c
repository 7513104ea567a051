
/*
 * Copyright (C) ngx_voice authors
 *
 * The WebSocket decoder as the OpenAI leg runs it: a client, reading
 * unmasked frames.  See ngx_voice_fuzz_ws.c.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_voice_fuzz.h"


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    ngx_voice_fuzz_init();

    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return ngx_voice_fuzz_ws(data, size, 0);
}
