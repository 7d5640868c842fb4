/* Emulation driver: reads raw float32 observations from the host file "obs.bin"
 * (semihosting), runs the generated actor on each, and prints one line per
 * observation to QEMU's stdout: "a <index> <hex float bits of each action>".
 * Ends with "stack <bytes used, hex>" and "done <count>". */
#include <stdint.h>

#include "actor_mcu.h"
#include "semihost.h"

uint32_t stack_used_bytes(void); /* startup.c */

static char line[16 + 9 * ACTOR_MCU_OUTPUT_SIZE];

static char *put_hex(char *p, uint32_t v, int digits) {
  for (int i = digits - 1; i >= 0; --i) *p++ = "0123456789abcdef"[(v >> (4 * i)) & 0xF];
  return p;
}

int main(void) {
  static float obs[ACTOR_MCU_INPUT_SIZE];
  static float act[ACTOR_MCU_OUTPUT_SIZE];
  int fd = semihost_open("obs.bin", 1);
  if (fd < 0) {
    semihost_puts("error: cannot open obs.bin\n");
    return 2;
  }
  uint32_t count = 0;
  while (semihost_read(fd, obs, sizeof obs) == (int)sizeof obs) {
    actor_mcu_invoke(obs, act);
    char *p = line;
    *p++ = 'a';
    *p++ = ' ';
    p = put_hex(p, count++, 8);
    for (int i = 0; i < ACTOR_MCU_OUTPUT_SIZE; ++i) {
      union { float f; uint32_t u; } bits = {act[i]};
      *p++ = ' ';
      p = put_hex(p, bits.u, 8);
    }
    *p++ = '\n';
    *p = 0;
    semihost_puts(line);
  }
  const char *labels[2] = {"stack ", "done "};
  uint32_t values[2] = {stack_used_bytes(), count};
  for (int k = 0; k < 2; ++k) {
    char *p = line;
    for (const char *s = labels[k]; *s;) *p++ = *s++;
    p = put_hex(p, values[k], 8);
    *p++ = '\n';
    *p = 0;
    semihost_puts(line);
  }
  return 0;
}
