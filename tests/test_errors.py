"""Every error a user can fix derives from FedlearnError (the CLI prints it as one line),
and keeps the built-in base that existing ``except`` clauses name."""
import importlib

import pytest

from fedlearn.errors import FedlearnError

# (module, class, the built-in base it keeps, the CLI's exit code)
USER_ERRORS = [
    ("fedlearn.config", "ConfigError", ValueError, 2),
    ("fedlearn.data", "DataError", RuntimeError, 2),
    ("fedlearn.server.checkpoint", "CheckpointError", RuntimeError, 2),
    ("fedlearn.server.federation", "RoundFailedError", RuntimeError, 1),
    ("fedlearn.backends.pysyft.loading", "SyftUnavailableError", ImportError, 2),
    ("fedlearn.backends.pysyft.hardening", "RefusedBySecurityPolicy", PermissionError, 2),
    ("fedlearn.backends.pysyft.client_safety", "UnknownTypeRefused", PermissionError, 2),
    ("fedlearn.backends.pysyft.supervision", "ServerDied", RuntimeError, 1),
    ("fedlearn.backends.pysyft.connection", "LoginError", PermissionError, 2),
    ("fedlearn.backends.pysyft.connection", "DatasiteUnreachable", ConnectionError, 2),
    ("fedlearn.backends.pysyft.connection", "DatasiteRefused", ConnectionError, 1),
    ("fedlearn.backends.pysyft.remote", "ApprovalError", RuntimeError, 2),
    ("fedlearn.backends.pysyft.owner", "ApprovalRefused", Exception, 2),
    ("fedlearn.backends.pysyft.owner", "UnknownRequest", KeyError, 2),
    ("fedlearn.backends.pysyft.owner", "SyftRefused", RuntimeError, 2),
    ("fedlearn.backends.pysyft.scientist", "StaleResultError", RuntimeError, 2),
    ("fedlearn.backends.pysyft.scientist", "InputRefusedError", RuntimeError, 2),
]


@pytest.mark.parametrize("module,name,builtin,code", USER_ERRORS,
                         ids=[row[1] for row in USER_ERRORS])
def test_user_errors_derive_from_fedlearn_error_and_keep_their_builtin_base(module, name,
                                                                            builtin, code):
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, FedlearnError)
    assert issubclass(cls, builtin)
    assert cls.exit_code == code


def test_a_key_error_reads_as_its_message():
    from fedlearn.backends.pysyft.owner import UnknownRequest

    assert str(UnknownRequest("bob: no request with id 12")) == "bob: no request with id 12"
