
/*
 * Copyright (C) ngx_voice authors
 *
 * The Twilio leg's messages, through yajl and the relay's handler tables,
 * in a whole call: the input speaks for Twilio, and its actions for
 * OpenAI, the sockets and the clock.  See ngx_voice_fuzz_call.c.
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
    return ngx_voice_fuzz_call(data, size, 0);
}
