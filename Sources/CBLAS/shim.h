#ifndef SWITCHYARD_CBLAS_SHIM_H
#define SWITCHYARD_CBLAS_SHIM_H
#include <cblas.h>
#endif
