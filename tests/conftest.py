"""Test-wide settings: CPU, a persistent JAX compilation cache, float32 matmuls."""
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_DEFAULT_MATMUL_PRECISION", "highest")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

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
def harness_export_dir(tmp_path_factory):
    """A small real export directory for the Pi-side harness tests (harness_helpers)."""
    from tests import harness_helpers
    return harness_helpers.build_export_dir(str(tmp_path_factory.mktemp("harness")))


# The longest files first (measured: cold-cache seconds per file, roughly): with two
# pytest-xdist workers taking whole files (`make test`), a long file collected last
# would run alone at the end while the other worker idles.
_LONG_FILES_FIRST = ("test_device_report.py", "test_mjx_parity.py", "test_suite_training.py",
                     "test_faults.py", "test_distributed.py", "test_train_cli.py",
                     "test_mjx_suite.py", "test_export.py", "test_return_fidelity.py",
                     "test_actor_critic_training.py", "test_export_cli.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(_LONG_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: keeps order
