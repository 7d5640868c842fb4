/* Minimal Cortex-M startup for the MPS2 boards in QEMU: vector table, .data/.bss
 * set-up, FPU enable (when built for one), stack painting (for the high-water
 * mark main() reports), then main(); faults end the run. */
#include <stdint.h>

#include "semihost.h"

extern uint32_t _sidata[], _sdata[], _edata[], _sbss[], _ebss[], _sstack[], _estack[];

#define STACK_PAINT 0x5A5A5A5Au

/* Bytes of the stack ever written since reset (the painted words left untouched end it). */
uint32_t stack_used_bytes(void) {
  const uint32_t *p = _sstack;
  while (p < _estack && *p == STACK_PAINT) ++p;
  return (uint32_t)((const char *)_estack - (const char *)p);
}
int main(void);

void reset_handler(void) {
  for (uint32_t *src = _sidata, *dst = _sdata; dst < _edata;) *dst++ = *src++;
  for (uint32_t *dst = _sbss; dst < _ebss;) *dst++ = 0;
  uint32_t *sp;
  __asm__ volatile("mov %0, sp" : "=r"(sp));
  for (uint32_t *dst = _sstack; dst < sp - 16;) *dst++ = STACK_PAINT;
#if defined(__ARM_FP)
  *(volatile uint32_t *)0xE000ED88 |= 0xFu << 20; /* CPACR: full access to CP10/CP11 */
  __asm__ volatile("dsb\n isb");
#endif
  semihost_exit(main());
}

static void fault_handler(void) {
  semihost_puts("mcu: fault\n");
  semihost_exit(3);
}

__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))_estack, reset_handler, fault_handler, fault_handler, fault_handler,
    fault_handler, fault_handler, 0, 0, 0, 0, fault_handler, fault_handler, 0,
    fault_handler, fault_handler,
};
