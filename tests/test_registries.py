"""One registry per kind of choice, next to its implementations; the names a config accepts (its
Literal types, which the CLI's choices read) are exactly the registry's, and a name says one
thing: FedAvg is the algorithm, ``mean`` the aggregation rule, ``sgd`` the server's step."""
from __future__ import annotations

import typing

import pytest

from fedlearn.aggregation import AGGREGATION_RULES
from fedlearn.config import (
    Aggregator,
    Algorithm,
    ConfigError,
    ModelName,
    RobustnessConfig,
    Scheme,
    ServerOptimizerConfig,
    ServerOptimizerName,
)
from fedlearn.config.execution import ExecutorName
from fedlearn.data.partition import PARTITIONERS
from fedlearn.execution.choose import EXECUTOR_MAKERS
from fedlearn.models import _REGISTRY as MODEL_REGISTRY
from fedlearn.server.optimizers import SERVER_OPTIMIZERS
from fedlearn.server.strategies import STRATEGIES


@pytest.mark.parametrize("names, registry", [
    (Aggregator, AGGREGATION_RULES), (ServerOptimizerName, SERVER_OPTIMIZERS),
    (Scheme, PARTITIONERS), (ModelName, MODEL_REGISTRY), (ExecutorName, EXECUTOR_MAKERS),
    (Algorithm, STRATEGIES)],
    ids=["aggregators", "server optimizers", "partitions", "models", "executors", "algorithms"])
def test_config_names_are_the_registry(names, registry):
    assert typing.get_args(names) == tuple(registry)


def test_former_names_are_refused_with_the_new_one():
    with pytest.raises(ConfigError, match="'fedavg' is now called 'mean'"):
        RobustnessConfig(aggregator="fedavg")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="'fedavg' is now called 'sgd'"):
        ServerOptimizerConfig(optimizer="fedavg")  # type: ignore[arg-type]


def test_cli_choices_read_from_the_registry():
    from fedlearn.cli.train import build_parser

    text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    for name in list(AGGREGATION_RULES) + list(SERVER_OPTIMIZERS) + list(PARTITIONERS):
        assert name in text
