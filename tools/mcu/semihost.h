/* Arm semihosting (bkpt 0xAB) calls used by the emulation run: host files and exit. */
#ifndef SEMIHOST_H_
#define SEMIHOST_H_

#include <stdint.h>

int semihost_open(const char *path, int mode); /* mode 1: "rb", 5: "wb"; -1 on failure */
int semihost_read(int fd, void *buf, int len);  /* bytes read */
int semihost_write(int fd, const void *buf, int len);
void semihost_puts(const char *s);              /* to the debug console (QEMU's stdout) */
void semihost_exit(int status) __attribute__((noreturn));

#endif /* SEMIHOST_H_ */
