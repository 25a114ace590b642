#ifndef SY_KERNELS_H
#define SY_KERNELS_H
int sy_kernels_version(void);
#endif
