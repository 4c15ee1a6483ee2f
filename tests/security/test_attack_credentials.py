"""Attack 7: training as the admin (who bypasses approval), PySyft's published ``changethis`` on
launched Datasites, passwords left in the server's environment, weak password choices."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from target import ADMIN, ADMIN_EMAIL, SCIENTIST, run_cli


def test_training_as_the_admin_is_refused_on_the_servers_word(served, tmp_path, mnist_dir):
    from fedlearn.backends.pysyft import Datasite

    before = {r["id"] for r in Datasite.connect(served.url, email=ADMIN_EMAIL,
                                                password=ADMIN).requests(include_decided=True)}
    # the scientist's command in this process (target.run_cli: same argv, exit code, output)
    run = run_cli(["train", "--backend", "pysyft", f"--datasite=bob={served.url}", "--email",
                   ADMIN_EMAIL, "--rounds", "1", "--data-dir", mnist_dir, "--out",
                   str(tmp_path / "out"), "--no-progress"],
                  {**served.env, "FEDLEARN_SCIENTIST_PASSWORD": ADMIN})
    assert run.returncode == 2, run.stderr
    assert "is a ADMIN account" in run.stderr and "only as a data scientist" in run.stderr
    after = {r["id"] for r in Datasite.connect(served.url, email=ADMIN_EMAIL,
                                               password=ADMIN).requests(include_decided=True)}
    assert after == before  # nothing was submitted or run as the admin


def test_the_passwords_are_not_in_the_servers_environment(served):
    pids = [served.process.pid]
    children = subprocess.run(["pgrep", "-P", str(served.process.pid)], capture_output=True,
                              text=True).stdout.split()
    pids += [int(p) for p in children]
    assert len(pids) >= 2  # serve and its uvicorn child, where approved code runs
    for pid in pids:
        environ = open(f"/proc/{pid}/environ", "rb").read()
        for secret in (ADMIN, SCIENTIST, "FEDLEARN_ADMIN_PASSWORD",
                       "FEDLEARN_SCIENTIST_PASSWORD"):
            assert secret.encode() not in environ, (pid, secret)


@pytest.mark.parametrize("admin,scientist,error", [
    ("same-password-1", "same-password-1", "must differ from the admin password"),
    (" " * 16, "scientist-password-1", "only blank space"),
    ("changethis", "scientist-password-1", "published default password"),
])
def test_weak_password_choices_are_refused_before_anything_starts(admin, scientist, error):
    env = {**os.environ, "FEDLEARN_ADMIN_PASSWORD": admin,
           "FEDLEARN_SCIENTIST_PASSWORD": scientist}
    run = subprocess.run([sys.executable, "-m", "fedlearn", "datasite", "serve", "--name", "bob",
                          "--scientist", "ds@lab.example"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert run.returncode == 2 and error in run.stderr, run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("port", [None, "auto"], ids=["in-process", "http-server"])
def test_launched_datasites_never_open_with_pysyfts_default_password(port):
    from fedlearn.backends.pysyft import Datasite
    from fedlearn.backends.pysyft.connection import LoginError, login

    site = Datasite.launch("carol", port=port)
    try:
        with pytest.raises(Exception, match="(?i)invalid|password|credentials|failed"):
            if port is None:
                site.handle.login(email=ADMIN_EMAIL, password="changethis")
            else:
                try:
                    login(site.url, ADMIN_EMAIL, "changethis")
                except LoginError as exc:
                    raise RuntimeError(f"login failed: {exc}") from exc
    finally:
        site.land()
