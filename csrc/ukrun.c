#include "kernel.h"
#include "ukrun.h"

const char *ukrun_version(void)
{
    return UKRUN_VERSION;
}
