/* Compiles lfp_abi.h once on the userspace side so its _Static_asserts run for this compiler. */
#include "lfp_abi.h"
