"""Peers: the learning table's report (``suite_report``, shared by
``experiments.bench_suite`` and the peer script) and the side by side with
Stable-Baselines3 (``sb3_peer``, needs the ``peers`` extra). Importing this package
imports neither torch nor stable_baselines3."""
