/* Arm semihosting calls; QEMU serves them with -semihosting-config enable=on,target=native. */
#include "semihost.h"

static int call(int op, const void *arg) {
  register int r0 __asm__("r0") = op;
  register const void *r1 __asm__("r1") = arg;
  __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}

static int length(const char *s) {
  int n = 0;
  while (s[n]) ++n;
  return n;
}

int semihost_open(const char *path, int mode) {
  const uint32_t args[3] = {(uint32_t)path, (uint32_t)mode, (uint32_t)length(path)};
  return call(0x01, args); /* SYS_OPEN */
}

int semihost_read(int fd, void *buf, int len) {
  const uint32_t args[3] = {(uint32_t)fd, (uint32_t)buf, (uint32_t)len};
  return len - call(0x06, args); /* SYS_READ returns the bytes NOT read */
}

int semihost_write(int fd, const void *buf, int len) {
  const uint32_t args[3] = {(uint32_t)fd, (uint32_t)buf, (uint32_t)len};
  return len - call(0x05, args); /* SYS_WRITE returns the bytes NOT written */
}

void semihost_puts(const char *s) { call(0x04, s); /* SYS_WRITE0 */ }

void semihost_exit(int status) {
  /* SYS_EXIT: ADP_Stopped_ApplicationExit (QEMU exits 0) or RunTimeErrorUnknown (1). */
  call(0x18, (const void *)(status == 0 ? 0x20026 : 0x20023));
  for (;;) {
  }
}
