// OpenBLAS's CBLAS interface and its thread-count controls (Debian: libopenblas-dev).
#include <cblas.h>
