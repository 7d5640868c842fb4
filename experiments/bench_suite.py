"""The learning table: each selected preset trained for its wall budget, then evaluated
in gymnasium's own environment of its task, one run after another.

    python -m experiments.bench_suite [--tasks=HalfCheetah-v5,Hopper-v5] [--agents=ppo,ac]
        [--seeds=0,1,2] [--preset=cpu] [--budget_scale=1] [--episodes=10]
        [--out=experiments/results/suite] [--runs_dir=runs/suite] [--collect_only]
        [--in_process] [--import_modules=M]

Run it from the repository root. Exit status: 0, 2 for bad flags (one line, nothing
written), 1 when an entry failed (one line each; the others are in the table), 130 on
Ctrl-C (finished entries kept). An entry is one (task, agent, preset, training seed):
``python -m experiments.train --flagfile=<preset> --seed=S --max_wall_s=B`` (the
training CLI, the trainer bench_learning uses; output in ``train.log`` of the run
directory), then ``evaluation.gymnasium_evaluate`` of its newest checkpoint:
deterministic policy, ``--episodes`` episodes seeded ``--gym_seed`` + 0, 1, ... (held
out: training seeds are small integers), falls = episodes that terminated before the
TimeLimit; the same evaluation of the run's ``best/`` policy (the best in-training
evaluation, kept by the trainer's ``--keep_best``) goes into the entry's ``best``.
Budgets B (seconds of training wall time, compile excluded) come from
``experiments.suite_references`` times ``--budget_scale``; the trainer stops at the
first training iteration past B.

Presets: ``<preset_dir>/<task>_<agent>_<preset>.flags`` for --preset=cpu|gpu, else the
candidate ``<preset_dir>/candidates/<task>_<agent>_<preset>.flags`` (task = lower-case
name before "-v": halfcheetah_ppo_cpu.flags). Outputs: ``<out>.json`` (one entry per
key "task/agent/preset/seedS", written after each entry), ``<out>.md`` (the table, the
per-seed rows, the references and, if ``<out>_peers.json`` exists, the SB3 side by side
of ``experiments.peers.sb3_peer``) and ``<out>.png`` (a panel per task: return against
training wall time per seed, their mean and min-max band, the gymnasium results and the
published reference).

Resuming: an entry already in ``<out>.json`` for the same preset content, a budget at
least as large and the same evaluation is skipped; a run directory holding checkpoints
is continued with the trainer's ``--resume`` (also to extend a run to a larger budget);
one whose training finished but whose evaluation did not is only evaluated. Run
directories are named by the preset's content (``<runs_dir>/<task>/<agent>_<SHA-1[:8]>/
seedS``): a preset whose content changed gets a new one, and two preset names with the
same content (``cpu`` and the candidate it points at) share one, so a run is trained once
and each name's entry only evaluates it.
"""
from __future__ import annotations

import datetime
import hashlib
import importlib
import json
import os
import subprocess
import sys

os.environ.setdefault("JAX_DEFAULT_MATMUL_PRECISION", "highest")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import gymnasium  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from experiments import suite_references as refs  # noqa: E402
from experiments import train as train_cli  # noqa: E402  (the training flags, for --in_process)
from experiments.peers import suite_report  # noqa: E402
from jaxrl_lite import agents, envs  # noqa: E402
from jaxrl_lite.run import checkpoint, evaluation, metrics, trainer  # noqa: E402

_TASKS = flags.DEFINE_list("tasks", list(refs.SUITE_TASKS), "Tasks (jaxrl_lite and gymnasium "
                           "names).")
_AGENTS = flags.DEFINE_list("agents", ["ppo", "ac"], "Agents: ppo, ac.")
_SEEDS = flags.DEFINE_list("seeds", None, "Training seeds for every task (default: 0,1,2 on "
                           "HalfCheetah and Hopper, 0 elsewhere).")
_PRESET = flags.DEFINE_string("preset", "cpu", "cpu | gpu | a candidate's name (zoo, brax, "
                              "ours, td3, crossq, ...).")
_PRESET_DIR = flags.DEFINE_string("preset_dir", "experiments/configs/suite", "Preset folder.")
_SCALE = flags.DEFINE_float("budget_scale", 1.0, "Multiplies every wall budget (0.01: smoke).")
_EPISODES = flags.DEFINE_integer("episodes", 10, "gymnasium evaluation episodes per entry.")
_GYM_SEED = flags.DEFINE_integer("gym_seed", 1000, "Seed of the first evaluation episode.")
_OUT = flags.DEFINE_string("out", "experiments/results/suite", "Output prefix: <out>.json, "
                           "<out>.md, <out>.png.")
_RUNS = flags.DEFINE_string("runs_dir", "runs/suite", "Where run directories go.")
_COLLECT = flags.DEFINE_boolean("collect_only", False, "Train nothing: rewrite the table "
                                "from <out>.json.")
_IN_PROCESS = flags.DEFINE_boolean("in_process", False, "Train in this process instead of a "
                                   "`python -m experiments.train` child (saves its ~3 s "
                                   "start; a long table should keep a process per run).")
_IMPORT = flags.DEFINE_list("import_modules", [], "Modules imported first (they may "
                            "envs.register() a task and gymnasium.register() its twin).")

PROG = "bench_suite"  # the name errors start with (the peer script sets its own)
TRAINED_FILE = "suite_trained.json"
TRAIN_FLAGS = tuple(f.name for f in flags.FLAGS.flags_by_module_dict()["experiments.train"])


class SuiteError(Exception):
    """A one-line error about the selection (exit 2) or an entry (the table goes on)."""


def slug(task: str) -> str:
    return task.split("-v")[0].lower()


def preset_path(preset_dir: str, task: str, agent: str, preset: str) -> str:
    sub = "" if preset in ("cpu", "gpu") else "candidates"
    return os.path.join(preset_dir, sub, f"{slug(task)}_{agent}_{preset}.flags")


def expanded_flags(path: str) -> list[str]:
    """The preset's flags with nested --flagfile lines expanded (paths relative to the
    working directory); SuiteError if a file is missing."""
    try:
        return flags.FlagValues().read_flags_from_files([f"--flagfile={path}"])
    except (flags.Error, OSError) as e:
        raise SuiteError(f"preset {path}: {str(e).splitlines()[0]}") from None


def flag_value(args: list[str], name: str) -> str | None:
    vals = [a.split("=", 1)[1] for a in args if a.startswith(f"--{name}=")]
    return vals[-1] if vals else None


def plan(tasks, agents_, seeds, preset, preset_dir, scale, runs_dir) -> list[dict]:
    """The selected entries (validated; nothing trained). SuiteError (one line) for an
    unknown task or agent, a missing preset or one for another task or algorithm."""
    known = envs.registered()
    for t in tasks:
        if t not in known:
            raise SuiteError(f"unknown task {t!r}; jaxrl_lite has: {', '.join(known)}")
        if t not in gymnasium.envs.registry:
            raise SuiteError(f"task {t!r} has no gymnasium environment to evaluate in "
                             f"(register one, see --import_modules)")
    for a in agents_:
        if a not in agents.names():
            raise SuiteError(f"unknown agent {a!r}; valid agents: {', '.join(agents.names())}")
    out = []
    for task in tasks:
        for agent in agents_:
            path = preset_path(preset_dir, task, agent, preset)
            if not os.path.isfile(path):
                raise SuiteError(f"no preset {path} for {task} {agent} (--preset={preset})")
            args = expanded_flags(path)
            for name, want in (("env", task), ("algo", agent)):
                if flag_value(args, name) != want:
                    raise SuiteError(f"preset {path} sets --{name}={flag_value(args, name)}, "
                                     f"not {want}")
            sha = hashlib.sha1("\n".join(args).encode()).hexdigest()
            for seed in (seeds if seeds is not None else refs.seeds(task)):
                out.append({"key": f"{task}/{agent}/{preset}/seed{seed}", "task": task,
                            "agent": agent, "preset": preset, "preset_file": path,
                            "preset_sha": sha, "seed": seed,
                            "budget_s": refs.budget_s(task, agent) * scale,
                            "out_dir": os.path.join(runs_dir, slug(task),
                                                    f"{agent}_{sha[:8]}", f"seed{seed}")})
    return out


def complete(entry: dict | None, want: dict, episodes: int, gym_seed: int) -> bool:
    return bool(entry) and entry.get("preset_sha") == want["preset_sha"] \
        and entry.get("budget_s", 0) >= want["budget_s"] * (1 - 1e-9) \
        and entry.get("episodes") == episodes and entry.get("gym_seeds", [None])[0] == gym_seed


def read_json(path: str, default):
    if not os.path.exists(path):
        return default
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise SuiteError(f"unreadable {path} ({e}); move it away to start a new table") from None


def write_json(path: str, data) -> None:
    """Atomic: a table is never left half-written."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(data, f, indent=1)
    os.replace(path + ".tmp", path)


def train(e: dict) -> dict:
    """Train (or resume, or skip when already trained to the budget) one entry's run;
    returns what the trainer recorded. SuiteError on a failed training."""
    out = e["out_dir"]
    done = read_json(os.path.join(out, TRAINED_FILE), {})
    if done.get("budget_s", 0) >= e["budget_s"] * (1 - 1e-9) and done.get("sha") == e["preset_sha"]:
        print(f"== {e['key']}: trained before, evaluating", flush=True)
        return done
    resume = bool(checkpoint.list_steps(out))
    cmd = [sys.executable, "-m", "experiments.train", f"--flagfile={e['preset_file']}",
           f"--seed={e['seed']}", f"--out_dir={out}", f"--max_wall_s={e['budget_s']:.3f}",
           "--noprogress"] + (["--resume"] if resume else [])
    os.makedirs(out, exist_ok=True)
    log = os.path.join(out, "train.log")
    print(f"== {e['key']}: {'resuming' if resume else 'training'} for {e['budget_s']:.0f} s "
          f"({'in this process' if _IN_PROCESS.value else 'log ' + log})", flush=True)
    if _IN_PROCESS.value:
        _train_here(e["key"], cmd[3:])
    else:
        _train_child(e["key"], cmd, log)
    records = metrics.read(out)
    with open(os.path.join(out, "config.json")) as f:
        total = json.load(f)["total_steps"]
    starts = metrics.read_jsonl(os.path.join(out, "runtime.jsonl"))
    last = records[-1]
    done = {"sha": e["preset_sha"], "budget_s": e["budget_s"], "env_steps": last["step"],
            "train_wall_s": last["wall_s"],
            "exit": "finished" if last["step"] >= total else "time budget",
            "compile_s": starts[-1].get("compile_s"), "starts": len(starts),
            "device": starts[-1].get("devices"), "jax": starts[-1].get("jax"),
            "curve": [[r["wall_s"], r["step"], r.get("eval/return_mean"),
                       r.get("episode_return_mean")] for r in records]}
    write_json(os.path.join(out, TRAINED_FILE), done)
    return done


def _train_child(key: str, cmd: list[str], log: str) -> None:
    with open(log, "a") as f:
        child = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
        try:
            rc = child.wait()
        except KeyboardInterrupt:
            _stop_child(child)
            raise
    if rc:
        with open(log) as f:
            lines = [ln.strip() for ln in f if ln.strip()]
        why = next((ln for ln in reversed(lines) if "error" in ln.lower()),
                   lines[-1] if lines else "")
        if rc == 130:
            raise KeyboardInterrupt
        raise SuiteError(f"{key}: training failed (exit {rc}): {why}")


def _stop_child(child: subprocess.Popen) -> None:
    """After Ctrl-C or SIGTERM here: wait for the training child's one-line exit (its
    checkpoints stay), SIGKILL after 60 s. Ctrl-C reaches the child too (same process
    group); a SIGTERM sent to this process alone does not, so it is passed on (the
    child ignores a second one)."""
    if train_cli.sigterm_received() and child.poll() is None:
        child.terminate()
    try:
        child.wait(timeout=60)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def _train_here(key: str, args: list[str]) -> None:
    """The training CLI's flags -> TrainConfig -> trainer.train, in this process."""
    for name in TRAIN_FLAGS:  # the previous entry's preset must not leak into this one
        flags.FLAGS[name].unparse()
    try:
        trainer.train(train_cli.config_from_args(args))
    except (trainer.TrainingError, ValueError) as err:
        raise SuiteError(f"{key}: training failed: {str(err).splitlines()[0]}") from None


def run_entry(e: dict, episodes: int, gym_seed: int) -> dict:
    """Train and evaluate one planned entry -> its JSON entry."""
    trained = train(e)
    gym = evaluation.gymnasium_evaluate(e["out_dir"], episodes, gym_seed)
    entry = {k: v for k, v in e.items()}
    entry.update({k: v for k, v in trained.items() if k != "sha"})
    entry.update({
        "env_steps_per_s": trained["env_steps"] / max(trained["train_wall_s"], 1e-9),
        "episodes": episodes, "gym_seeds": gym["seeds"], "return_mean": gym["return_mean"],
        "return_std": gym["return_std"], "returns": gym["returns"],
        "episode_lengths": gym["episode_lengths"], "falls": gym["falls"],
        "checkpoint_env_steps": gym["checkpoint_env_steps"], "gym_eval_s": gym["gym_eval_s"],
        "cpu_count": os.cpu_count(),
        "finished_utc": datetime.datetime.now(datetime.timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%SZ")})
    print(f"   {e['key']}: gymnasium {gym['return_mean']:.1f} ± {gym['return_std']:.1f}, "
          f"{gym['falls']}/{episodes} falls, {trained['env_steps']:,} env steps in "
          f"{trained['train_wall_s']:.0f} s", flush=True)
    best = checkpoint.best_dir(e["out_dir"])
    if checkpoint.list_steps_in(best):  # the trainer's --keep_best policy, same evaluation
        _, meta = checkpoint.load_meta(best)
        gb = evaluation.gymnasium_evaluate(best, episodes, gym_seed)
        entry["best"] = {"env_steps": gb["checkpoint_env_steps"],
                         "eval_return_mean": meta.get("eval/return_mean"),
                         **{k: gb[k] for k in ("return_mean", "return_std", "returns",
                                               "episode_lengths", "falls", "gym_eval_s")}}
        print(f"   best in-training evaluation (step {gb['checkpoint_env_steps']:,}): "
              f"gymnasium {gb['return_mean']:.1f} ± {gb['return_std']:.1f}, "
              f"{gb['falls']}/{episodes} falls", flush=True)
    return entry


def run_all(planned: list[dict], table: dict, path: str, episodes: int, gym_seed: int,
            collect_only: bool) -> list[str]:
    """Run every incomplete entry, saving the table after each; -> one-line failures."""
    failures = []
    for e in planned:
        if complete(table["entries"].get(e["key"]), e, episodes, gym_seed):
            print(f"== {e['key']}: done before, skipped", flush=True)
            continue
        if collect_only:
            continue
        try:
            table["entries"][e["key"]] = run_entry(e, episodes, gym_seed)
        except SuiteError as err:
            failures.append(str(err))
            print(f"   {err}", file=sys.stderr, flush=True)
            continue
        write_json(path, table)
    return failures


def write_report(out: str) -> None:
    """<out>.md and <out>.png from <out>.json (and <out>_peers.json when present)."""
    table = read_json(out + ".json", {"entries": {}})
    peers = read_json(out + "_peers.json", None)
    suite_report.write(table, peers, out)


def _seeds() -> list[int] | None:
    if _SEEDS.value is None:
        return None
    try:
        seeds = [int(s) for s in _SEEDS.value]
    except ValueError:
        raise SuiteError(f"--seeds must be comma-separated integers, got "
                         f"{','.join(_SEEDS.value)!r}") from None
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise SuiteError(f"--seeds must be distinct non-negative integers, got {seeds}")
    return seeds


def selection() -> list[dict]:
    """The flags' entries, validated (imports --import_modules first); SuiteError."""
    for name in _IMPORT.value:
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise SuiteError(f"--import_modules: cannot import {name!r} ({e})") from None
    if not _SCALE.value > 0:
        raise SuiteError(f"--budget_scale must be > 0, got {_SCALE.value}")
    if _EPISODES.value < 1:
        raise SuiteError(f"--episodes must be >= 1, got {_EPISODES.value}")
    if not _TASKS.value or not _AGENTS.value:
        raise SuiteError("--tasks and --agents must name at least one each")
    given = [n for n in TRAIN_FLAGS if flags.FLAGS[n].present]
    if given:
        raise SuiteError(f"training flags go into the preset, not here: --{given[0]}")
    return plan(_TASKS.value, _AGENTS.value, _seeds(), _PRESET.value, _PRESET_DIR.value,
                _SCALE.value, _RUNS.value)


def main(argv):
    if len(argv) > 1:
        fail(f"unexpected positional arguments: {' '.join(argv[1:])}")
    path = _OUT.value + ".json"
    try:
        planned = selection()
        table = read_json(path, {"entries": {}})
    except SuiteError as e:
        fail(str(e))
    logging.set_verbosity(logging.WARNING)
    train_cli.interrupt_on_sigterm()
    try:
        failures = run_all(planned, table, path, _EPISODES.value, _GYM_SEED.value,
                           _COLLECT.value)
    except KeyboardInterrupt:
        write_report(_OUT.value)
        fail("interrupted; finished entries are in the table, run the same command to "
              "resume", 130)
    write_report(_OUT.value)
    written = [f"{_OUT.value}.{x}" for x in ("md", "json", "png")
               if os.path.exists(f"{_OUT.value}.{x}")]
    print(f"table: {', '.join(written)}", flush=True)
    if failures:
        fail(f"{len(failures)} entr{'y' if len(failures) == 1 else 'ies'} failed: "
              + " | ".join(failures), 1)


def fail(msg: str, code: int = 2):
    sys.stderr.write(f"{PROG}: error: {msg}\n")
    sys.stderr.flush()
    sys.exit(code)


def parse_flags(argv):
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        fail(str(e).splitlines()[0] if str(e) else type(e).__name__)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
