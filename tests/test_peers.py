"""The SB3 side by side end to end on PointMass-v0 (its gymnasium twin comes from
tests.test_bench_suite) with budgets of about a second: ours then SB3 for each pair,
the peers JSON and the Markdown section merged into the table, a second invocation
skips everything. Skipped when stable_baselines3 (the ``peers`` extra) is absent."""
import json

import pytest

from tests import test_bench_suite as tbs

pytest.importorskip("stable_baselines3")

TINY_AC = ["--algo=ac", "--env=PointMass-v0", "--num_envs=4", "--steps_per_iteration=16",
           "--total_steps=1000000", "--buffer_size=4096", "--batch_size=32", "--hidden=16,16",
           "--warmup_steps=128", "--utd_ratio=0.25", "--log_every_steps=256",
           "--eval_every_steps=512", "--eval_envs=2", "--checkpoint_every_steps=512",
           "--keep_checkpoints=2", "--plot_every_s=1000"]


def peer(tmp, *args):
    return tbs.suite(tmp, "--budget_scale=0.004", "--in_process", *args,
                     module="experiments.peers.sb3_peer")


def test_side_by_side(tmp_path):
    tbs.write_presets(tmp_path / "presets")
    tbs.write_presets(tmp_path / "presets", agent="ac", args=TINY_AC)
    r = peer(tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    out = tmp_path / "out"
    table = json.load(open(out / "suite_peers.json"))
    assert table["task"] == "PointMass-v0"
    assert table["pairs"] == [["ppo", "ppo"], ["ac", "td3"]]
    assert set(table["entries"]) == {"ours/ppo/seed0", "sb3/ppo/seed0", "ours/ac/seed0",
                                     "sb3/td3/seed0"}
    for e in table["entries"].values():
        assert e["episodes"] == 3 and len(e["returns"]) == 3 and e["gym_seeds"] == [1000, 1002]
        assert e["env_steps"] > 0 and e["budget_s"] == pytest.approx(1.2)
    sb3 = table["entries"]["sb3/ppo/seed0"]
    assert sb3["train_wall_s"] >= 1.2 and "HalfCheetah-v4" in sb3["hyperparameters"]
    # The order is ours then SB3 per pair: never two runs at once.
    assert r.stdout.index("ppo/cpu/seed0") < r.stdout.index("sb3/ppo/seed0") \
        < r.stdout.index("ac/cpu/seed0") < r.stdout.index("sb3/td3/seed0")
    md = open(out / "suite.md").read()
    assert "## Side by side with Stable-Baselines3 on PointMass-v0" in md
    assert "| ppo (cpu) | PPO (zoo) | 0 |" in md and "| ac (cpu) | TD3 (zoo) | 0 |" in md
    assert (out / "suite.png").stat().st_size > 10_000

    again = peer(tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("done before, skipped") == 4
    assert json.load(open(out / "suite_peers.json"))["entries"] == table["entries"]


def test_peers_must_pair_with_agents(tmp_path):
    tbs.write_presets(tmp_path / "presets")
    r = peer(tmp_path, "--agents=ppo", "--peers=ppo,td3")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "sb3_peer: error: --peers (ppo,td3) must pair one SB3 algorithm with each of "
        "--agents (ppo)"]
