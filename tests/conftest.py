"""Test-wide settings: CPU, a persistent JAX compilation cache, float32 matmuls."""
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_DEFAULT_MATMUL_PRECISION", "highest")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Tests compile far more than they compute, so XLA compiles for speed of compiling: LLVM
# -O0 and the older loop emitters (the newer fusion emitters at -O0 make slow code: a
# training iteration ran 12x slower). On four compile-heavy test files: 135 s against 285 s
# at XLA's defaults (experiments/results/ci_and_demo_times.md). Every process a test starts
# inherits it; flags already set in XLA_FLAGS are left alone. Training and benchmarks keep
# XLA's defaults.
for _flag, _value in (("--xla_backend_optimization_level", "0"),
                      ("--xla_cpu_use_fusion_emitters", "false")):
    if _flag not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_flag}={_value}".strip()

# The persistent compilation cache for this process and every process a test starts (they
# inherit the environment): every compile is written, however short, because the suite
# starts many short processes that compile the same functions.
os.environ.setdefault("JAXRL_LITE_JAX_CACHE",
                      os.path.join(os.path.dirname(os.path.dirname(__file__)), ".jax_cache"))
os.environ.setdefault("JAXRL_LITE_JAX_CACHE_MIN_S", "0")
from jaxrl_lite.run import compile_cache  # noqa: E402

compile_cache.configure()


import concurrent.futures  # noqa: E402

import pytest  # noqa: E402

from jaxrl_lite.run import metrics  # noqa: E402
from tests import cli_runs  # noqa: E402


@pytest.fixture(scope="session")
def cli_runs_ab(tmp_path_factory):
    """Run A (plain ``python -m``), and B: the same run stopped at 700 steps, then
    resumed. Shared by the command-line and fault tests; never modify them."""
    base = tmp_path_factory.mktemp("cli")
    a, b = str(base / "a"), str(base / "b")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        # The reference run is a plain `python -m experiments.train`; the others fork.
        fa = pool.submit(cli_runs.train, *cli_runs.COMMON, f"--out_dir={a}", fork=False)
        fb = pool.submit(cli_runs.train, *cli_runs.COMMON, f"--out_dir={b}", "--stop_after_steps=700")
        ra, rb1 = fa.result(), fb.result()
    assert ra.returncode == 0, ra.stderr[-3000:]
    assert rb1.returncode == 0, rb1.stderr[-3000:]
    stopped = metrics.read(b)
    rb2 = cli_runs.train(*cli_runs.COMMON, f"--out_dir={b}", "--resume")
    assert rb2.returncode == 0, rb2.stderr[-3000:]
    return {"base": base, "a": a, "b": b, "stopped_records": stopped}


@pytest.fixture(scope="module")
def actor_run(tmp_path_factory):
    """A checkpoint of a small (64, 64) Ant-v5 actor whose actions span [-1, 1]:
    (run_dir, spec, params, normaliser). One per test module (export tests)."""
    from tests import export_helpers
    return export_helpers.actor_run(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="session")
def trained_export(tmp_path_factory):
    """One export of the committed trained Ant-v5 policy: (export_dir, manifest).
    Shared by test_export.py and test_return_fidelity.py (one xdist group, below)."""
    from tests import export_helpers
    return export_helpers.trained_export(tmp_path_factory.mktemp("trained_export") / "export")


@pytest.fixture(scope="session")
def harness_export_dir(tmp_path_factory):
    """A small real export directory for the Pi-side harness tests (harness_helpers)."""
    from tests import harness_helpers
    return harness_helpers.build_export_dir(str(tmp_path_factory.mktemp("harness")))


# pytest-xdist (`make test`: --dist loadfile) sends whole files to a worker, so module and
# session fixtures stay in one process. Files that share a session fixture go to the same
# worker, so it is built once, not once per worker: the CLI runs A/B (cli_runs_ab), the
# Pi-side export directory (harness_export_dir) and the export of the committed trained
# policy (trained_export).
_SHARED_FIXTURE_GROUPS = {"test_faults.py": "cli_runs", "test_train_cli.py": "cli_runs",
                          "test_train_bad_input.py": "cli_runs",
                          "test_evaluate.py": "harness", "test_evaluate_bad_input.py": "harness",
                          "test_export.py": "export", "test_return_fidelity.py": "export"}

# The longest groups first (measured: cold-cache seconds per group, worker-seconds with two
# workers: cli_runs 290, test_distributed 190, test_device_report 170, ...): a long group
# sent last would run alone at the end while the other worker idles. `make test` passes
# --no-loadscope-reorder, else xdist orders the groups by their number of tests.
_LONG_GROUPS_FIRST = ("cli_runs", "test_distributed.py", "test_device_report.py",
                      "test_suite_training.py", "test_mjx_parity.py",
                      "test_actor_critic_training.py", "export", "test_actor_critic.py",
                      "test_mjx_suite.py", "test_pi_install.py", "harness",
                      "test_bench_suite.py")


def _group(path: str) -> str:
    name = os.path.basename(str(path).split("::", 1)[0])
    return _SHARED_FIXTURE_GROUPS.get(name, name)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(_LONG_GROUPS_FIRST)}
    items.sort(key=lambda item: rank.get(_group(item.path), len(rank)))  # stable: keeps order


def pytest_xdist_make_scheduler(config, log):
    """--dist loadfile, with the shared-fixture files as one unit (pytest-xdist's own
    --dist loadgroup reads xdist_group marks but cannot rename pytest 9's node ids)."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SharedFixtureScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _group(nodeid)

    return SharedFixtureScheduling(config, log)
