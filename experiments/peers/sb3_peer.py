"""Side by side with Stable-Baselines3: ours and SB3 on the same task, for the same wall
budget, on this machine, in this invocation, one run after another.

    pip install ".[peers]"       # stable-baselines3 + torch (CPU)
    python -m experiments.peers.sb3_peer [--tasks=HalfCheetah-v5] [--agents=ppo,ac] \\
        [--peers=ppo,td3] [--seeds=0] [--budget_scale=1] [--out=experiments/results/suite] \\
        [--runs_dir=runs/suite_peers]

Pairs: ``--agents`` (ours) and ``--peers`` (SB3: ppo, td3, sac) in order; the default
pairs our PPO with SB3 PPO (10 min on HalfCheetah-v5) and our actor-critic with SB3 TD3
(30 min; the zoo's best HalfCheetah row and the same algorithm family as ours). For
each seed and pair: ours (``bench_suite``'s entry: the suite preset through
``python -m experiments.train``, then ``gymnasium_evaluate``), then SB3 with the zoo's
HalfCheetah hyperparameters for the same budget (a callback stops it), evaluated by the
same loop (``sb3_agents.evaluate``). Takes ``bench_suite``'s flags (one task only; its
own run directory, ``runs/suite_peers``, so the suite's runs are not reused).

Writes ``<out>_peers.json`` (one entry per side/agent/seed, after each) and re-renders
``<out>.md`` / ``<out>.png`` with the side-by-side section. Finished entries are
skipped; our half-trained runs resume; an unfinished SB3 run starts over (SB3 is not
checkpointed here).
"""
from __future__ import annotations

import sys

from absl import app, flags, logging

from experiments import bench_suite
from experiments import suite_references as refs

try:
    from experiments.peers import sb3_agents
except ImportError as _e:  # the peers extra is optional
    sys.stderr.write(f"sb3_peer: error: needs the peers extra (pip install '.[peers]'): {_e}\n")
    sys.exit(2)

FLAGS = flags.FLAGS
bench_suite.PROG = "sb3_peer"
FLAGS.set_default("tasks", ["HalfCheetah-v5"])
FLAGS.set_default("seeds", ["0"])
FLAGS.set_default("runs_dir", "runs/suite_peers")
_PEERS = flags.DEFINE_list("peers", ["ppo", "td3"], "SB3 algorithms (ppo, td3, sac), paired "
                           "in order with --agents.")
_THREADS = flags.DEFINE_integer("torch_threads", 1, "torch.set_num_threads for SB3 (0: torch's "
                                "default, one per core). 1, as rl-baselines3-zoo's train.py "
                                "advises for CPU: on this shared 2-core machine torch's 2-thread "
                                "pool made a zoo PPO HalfCheetah update cycle ~12x slower.")


def _check() -> tuple[list[dict], list[tuple[str, str]]]:
    entries = bench_suite.selection()
    if len(FLAGS.tasks) != 1:
        raise bench_suite.SuiteError(f"the side by side takes one task, got {FLAGS.tasks}")
    if len(_PEERS.value) != len(FLAGS.agents):
        raise bench_suite.SuiteError(f"--peers ({','.join(_PEERS.value)}) must pair one SB3 "
                                     f"algorithm with each of --agents ({','.join(FLAGS.agents)})")
    if _THREADS.value < 0:
        raise bench_suite.SuiteError(f"--torch_threads must be >= 0, got {_THREADS.value}")
    for p in _PEERS.value:
        if p not in sb3_agents.ALGOS:
            raise bench_suite.SuiteError(f"unknown SB3 algorithm {p!r}; valid: "
                                         f"{', '.join(sb3_agents.ALGOS)}")
    return entries, list(zip(FLAGS.agents, _PEERS.value))


def _sb3_done(entry: dict | None, budget_s: float) -> bool:
    return bool(entry) and entry["budget_s"] >= budget_s * (1 - 1e-9) \
        and entry["episodes"] == FLAGS.episodes and entry["gym_seeds"][0] == FLAGS.gym_seed


def run(entries: list[dict], pairs: list[tuple[str, str]], table: dict, path: str) -> list[str]:
    """Every pair of every seed, ours then SB3; -> one-line failures."""
    failures, task = [], FLAGS.tasks[0]
    ours = {(e["agent"], e["seed"]): e for e in entries}
    for seed in sorted({e["seed"] for e in entries}):
        for agent, peer in pairs:
            e = dict(ours[(agent, seed)], side="ours")
            key = f"ours/{agent}/seed{seed}"
            if bench_suite.complete(table["entries"].get(key), e, FLAGS.episodes, FLAGS.gym_seed):
                print(f"== peers {key}: done before, skipped", flush=True)
            elif not FLAGS.collect_only:
                try:
                    table["entries"][key] = dict(
                        bench_suite.run_entry(e, FLAGS.episodes, FLAGS.gym_seed), side="ours")
                    bench_suite.write_json(path, table)
                except bench_suite.SuiteError as err:
                    failures.append(str(err))
                    print(f"   {err}", file=sys.stderr, flush=True)
            key, budget = f"sb3/{peer}/seed{seed}", e["budget_s"]
            if _sb3_done(table["entries"].get(key), budget):
                print(f"== peers {key}: done before, skipped", flush=True)
            elif not FLAGS.collect_only:
                print(f"== peers {key}: SB3 {peer.upper()} on {task} for {budget:.0f} s",
                      flush=True)
                r = sb3_agents.train_and_evaluate(peer, task, seed, budget, FLAGS.episodes,
                                                  FLAGS.gym_seed, _THREADS.value)
                table["entries"][key] = r
                bench_suite.write_json(path, table)
                print(f"   {key}: gymnasium {r['return_mean']:.1f} ± {r['return_std']:.1f}, "
                      f"{r['falls']}/{r['episodes']} falls, {r['env_steps']:,} env steps in "
                      f"{r['train_wall_s']:.0f} s", flush=True)
    return failures


def main(argv):
    if len(argv) > 1:
        bench_suite.fail(f"unexpected positional arguments: {' '.join(argv[1:])}")
    path = FLAGS.out + "_peers.json"
    try:
        entries, pairs = _check()
        table = bench_suite.read_json(path, None) or {"entries": {}}
        if table.get("task", FLAGS.tasks[0]) != FLAGS.tasks[0]:
            raise bench_suite.SuiteError(f"{path} holds a side by side on {table['task']}; "
                                         f"choose another --out")
    except bench_suite.SuiteError as e:
        bench_suite.fail(str(e))
    table.update({"task": FLAGS.tasks[0], "preset": FLAGS.preset,
                  "pairs": [list(p) for p in dict.fromkeys(
                      [tuple(p) for p in table.get("pairs", [])] + pairs)],
                  "budgets_s": {a: refs.budget_s(FLAGS.tasks[0], a) * FLAGS.budget_scale
                                for a, _ in pairs}})
    logging.set_verbosity(logging.WARNING)
    bench_suite.train_cli.interrupt_on_sigterm()
    try:
        failures = run(entries, pairs, table, path)
    except KeyboardInterrupt:
        bench_suite.write_report(FLAGS.out)
        bench_suite.fail("interrupted; finished entries are kept, run the same command to "
                          "resume", 130)
    bench_suite.write_json(path, table)
    bench_suite.write_report(FLAGS.out)
    print(f"side by side: {path}; section in {FLAGS.out}.md", flush=True)
    if failures:
        bench_suite.fail(" | ".join(failures), 1)


if __name__ == "__main__":
    app.run(main, flags_parser=bench_suite.parse_flags)
