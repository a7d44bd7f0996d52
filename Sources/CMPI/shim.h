// OpenMPI's C interface (Debian: libopenmpi-dev). Its handles and constants (MPI_COMM_WORLD,
// MPI_FLOAT, MPI_SUM, MPI_IN_PLACE, ...) are macros over the addresses of global objects, which
// Swift cannot import; the functions below return them.
#include <mpi.h>

static inline MPI_Comm mg_mpi_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Comm mg_mpi_comm_null(void) { return MPI_COMM_NULL; }
static inline MPI_Datatype mg_mpi_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype mg_mpi_double(void) { return MPI_DOUBLE; }
static inline MPI_Datatype mg_mpi_int32(void) { return MPI_INT32_T; }
static inline MPI_Datatype mg_mpi_uint16(void) { return MPI_UINT16_T; }
static inline MPI_Datatype mg_mpi_byte(void) { return MPI_BYTE; }
static inline MPI_Op mg_mpi_sum(void) { return MPI_SUM; }
static inline MPI_Op mg_mpi_max(void) { return MPI_MAX; }
static inline MPI_Op mg_mpi_min(void) { return MPI_MIN; }
static inline void *mg_mpi_in_place(void) { return MPI_IN_PLACE; }
static inline MPI_Status *mg_mpi_status_ignore(void) { return MPI_STATUS_IGNORE; }
static inline MPI_Errhandler mg_mpi_errors_return(void) { return MPI_ERRORS_RETURN; }
static inline int mg_mpi_success(void) { return MPI_SUCCESS; }
static inline int mg_mpi_thread_serialized(void) { return MPI_THREAD_SERIALIZED; }
static inline int mg_mpi_thread_multiple(void) { return MPI_THREAD_MULTIPLE; }
static inline int mg_mpi_max_error_string(void) { return MPI_MAX_ERROR_STRING; }
