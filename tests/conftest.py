"""Shared fixtures. Real-MNIST tests read FEDLEARN_DATA; in CI a missing dataset fails."""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

# Under pytest-xdist each worker gets its own temporary directory, before anything reads it:
# syft keeps a Datasite's database under $TMPDIR/syft/<id of its name>, so two workers each
# launching "bob" would otherwise share one; Ray's session files and the subprocesses the tests
# start follow TMPDIR too.
if os.environ.get("PYTEST_XDIST_WORKER"):
    # short: Ray's socket paths under it must stay within AF_UNIX's 107 bytes
    _worker_tmp = Path(tempfile.gettempdir(), f"fl-{os.environ['PYTEST_XDIST_WORKER']}-"
                       f"{os.environ.get('PYTEST_XDIST_TESTRUNUID', 'run')[:6]}")
    _worker_tmp.mkdir(parents=True, exist_ok=True)
    os.environ["TMPDIR"] = str(_worker_tmp)
    tempfile.tempdir = None  # gettempdir() reads TMPDIR again
    # Two workers on two cores: one torch thread each (two each would be four on two cores,
    # each worker's threads waiting on the other's), and threads that sleep rather than spin
    # when they wait. Read when torch loads, below; the subprocesses the tests start (served
    # Datasites, notebook kernels, the CLI) inherit both. A test that needs other threads
    # sets them itself; results do not depend on how threads wait.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402  (after the environment above, which torch reads once)

# never write into the user's cache from tests
os.environ.setdefault("FEDLEARN_CACHE", tempfile.mkdtemp(prefix="fedlearn-test-cache-"))

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))  # the test tools: local_hosts, notebook_runner


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI (``.ci/run`` sets CI=1) a skipped test is a failure: a skip would hide a check."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where every test must run: {reason}"


@pytest.fixture(scope="session")
def mnist_dir() -> str:
    path = os.environ.get("FEDLEARN_DATA")
    if not path or not Path(path).is_dir():
        message = (f"real-MNIST test needs FEDLEARN_DATA pointing at the MNIST files "
                   f"(got {path!r}); e.g. FEDLEARN_DATA=../shared/datasets/mnist")
        if os.environ.get("CI"):
            pytest.fail(message)  # in CI a skipped real-data test would hide a failure
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def mnist_small(mnist_dir):
    """4,000 training and 1,000 test images of real MNIST."""
    from fedlearn.config import DataConfig
    from fedlearn.data import load_mnist

    return load_mnist(DataConfig(data_dir=mnist_dir, train_size=4000, test_size=1000), seed=0)


@pytest.fixture
def synthetic():
    """A tiny separable 10-class problem shaped like MNIST: fast and data-free."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(200) % 10
    x = torch.randn(200, 1, 28, 28, generator=g) * 0.3
    x[torch.arange(200), 0, y, y] += 3.0  # a bright pixel whose position is the label
    return x, y


@pytest.fixture(scope="session")
def served(mnist_dir, tmp_path_factory):
    """Bob's Datasite served for real on loopback, shared by the attack tests (tests/security)."""
    import sys

    sys.path.insert(0, str(REPO / "tests" / "security"))
    from target import start_server

    try:
        from fedlearn.backends.pysyft import require_syft
        require_syft()
    except ImportError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"the attack tests need syft 0.9.5: {exc}")
        pytest.skip(f"syft 0.9.5 not installed: {exc}")
    server = start_server(mnist_dir, tmp_path_factory.mktemp("bob"))
    yield server
    server.stop()


# The everyday tier, `pytest -m "not slow"`: tests on tensors in this process. What starts a
# served Datasite, a Ray cluster or network namespaces (tests/security, tests/backends, except
# the *_unit.py files there) or needs real MNIST or syft is in the slow tier; CI runs both.
SLOW_FOLDERS = {"security", "backends"}
# handed out first under pytest-xdist, longest first: each file's wall time under `-n 2`
# (docs/tests.md), from about 4 minutes (test_ray.py) down to 20 s. The quick files come last
# and fill the gaps, so both workers finish together.
LONGEST_FILES = ["test_ray.py", "test_notebook.py", "test_pysyft.py", "test_walkthrough.py",
                 "test_state_survives.py", "test_pysyft_secagg.py", "test_multihost.py",
                 "test_http_door.py", "test_transport_tls.py", "test_processes.py",
                 "test_attack_trap_weights.py", "test_pysyft_topk.py",
                 "test_benchmarks_quick.py", "test_docs.py", "test_pysyft_quantized.py",
                 "test_cli.py", "test_kill_resume.py", "test_attack_approval.py",
                 "test_secrets.py", "test_attack_files_and_lifetime.py",
                 "test_attack_malicious_datasite.py", "test_syft_environment.py"]


def pytest_configure(config):
    # pytest-xdist 3.x hands out the files with the most tests first unless told not to,
    # which undid the order below: the 76 s walkthrough (one test) started last, and the
    # other worker idled through its last 36 s
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config, items):
    for item in items:
        path = Path(str(item.fspath))
        if ((path.parent.name in SLOW_FOLDERS and not path.stem.endswith("_unit"))
                or item.get_closest_marker("pysyft") or item.get_closest_marker("mnist")):
            item.add_marker(pytest.mark.slow)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # pytest-xdist (`--dist loadfile`) hands out files in this order: the longest first, the
        # slow tier next and the quick files last, so no worker is left alone with a long file
        # at the end. Each file's own order is kept.
        slow_files = {str(item.fspath) for item in items if item.get_closest_marker("slow")}

        def rank(item) -> tuple[int, int]:
            name = Path(str(item.fspath)).name
            longest = LONGEST_FILES.index(name) if name in LONGEST_FILES else len(LONGEST_FILES)
            return (longest, 0 if str(item.fspath) in slow_files else 1)

        items.sort(key=rank)

