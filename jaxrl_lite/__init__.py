"""jaxrl_lite: vectorised PPO and TD3-style actor-critic in JAX over MJX Ant-v5,
exported to TFLite / TFLite Micro for Raspberry-Pi-class targets."""

__version__ = "0.1.0"
