/* Host driver for the generated model: float32 observations in on stdin (raw,
 * ACTOR_MCU_INPUT_SIZE per row, until EOF), float32 actions out on stdout. */
#include <stdio.h>

#include "actor_mcu.h"

int main(void) {
  float obs[ACTOR_MCU_INPUT_SIZE], act[ACTOR_MCU_OUTPUT_SIZE];
  while (fread(obs, sizeof obs, 1, stdin) == 1) {
    actor_mcu_invoke(obs, act);
    if (fwrite(act, sizeof act, 1, stdout) != 1) return 1;
  }
  return ferror(stdin) ? 1 : 0;
}
