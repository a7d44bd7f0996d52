// OpenBLAS's CBLAS interface and its thread-count controls (Debian: libopenblas-dev).
#include <cblas.h>

// Functions every threaded OpenBLAS build exports without declaring them in cblas.h (its fork
// handler and its start-up code use them): re-read the OPENBLAS_* environment variables, the
// thread timeout read (log2 cycles; 0 when unset), and stop the worker threads so that the next
// call starts them again with what was re-read.
void openblas_read_env(void);
int openblas_thread_timeout(void);
int blas_thread_shutdown_(void);
