"""The gymnasium MuJoCo v5 suite, one TaskSpec per task (grouped by family)."""
from jaxrl_lite.envs.tasks import ant, arms, humanoid, locomotion, pendulums

SUITE = (ant.TASK, locomotion.HALF_CHEETAH, locomotion.HOPPER, locomotion.WALKER2D,
         humanoid.HUMANOID, humanoid.STANDUP, locomotion.SWIMMER, arms.REACHER, arms.PUSHER,
         pendulums.INVERTED_PENDULUM, pendulums.INVERTED_DOUBLE_PENDULUM)
