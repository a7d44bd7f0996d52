// Returning freed heap memory to the system.
#include "CKernels.h"
#if defined(__GLIBC__)
#include <malloc.h>
#endif

void mg_trim_heap(void) {
#if defined(__GLIBC__)
    malloc_trim(0);
#endif
}
