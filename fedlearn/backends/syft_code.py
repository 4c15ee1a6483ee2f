"""The training code a data scientist submits to a Datasite, built from fedlearn's own source.

PySyft ships a code request as the source of one function and runs it with a
plain ``exec`` inside the data owner's server: no closures, no module globals.
So the function is generated: the model class, the normalisation and the
training/evaluation functions are inlined from ``fedlearn.models``,
``fedlearn.data`` and ``fedlearn.training`` into its body. The owner reviews
exactly the code that runs, and it is the same code the in-process workers run,
which is why the two backends give the same weights.

The generated file is written to a cache directory and imported, so that
``inspect.getsource`` (which PySyft uses) finds real source.
"""
from __future__ import annotations

import hashlib
import importlib.util
import inspect
import textwrap
from pathlib import Path

from fedlearn import data, models, training
from fedlearn.data import cache_dir

FUNCTION_NAME = "fedlearn_round"

_HEADER = '''def {name}(images, labels, weights, plan, seed, nonce, mode):
    """fedlearn: one federated round on this Datasite's private MNIST shard.

    mode == "fit": load the global `weights` into a {model} and train it with SGD
    as `plan` says (epochs, batch_size, lr, momentum, weight_decay), shuffling with
    `seed`; return ONLY the weight change, the number of examples used and the
    mean training loss. mode == "evaluate": return loss and accuracy of `weights`
    on the local data. No image or label leaves the Datasite. `nonce` is echoed so
    the data scientist can prove the result is fresh (PySyft issue #9391).
    """
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from types import SimpleNamespace as TrainPlan

    MNIST_MEAN, MNIST_STD = {mean!r}, {std!r}
'''

_BODY = '''
    if mode not in ("fit", "evaluate"):
        raise ValueError(f"mode must be 'fit' or 'evaluate', got {{mode!r}}")
    x = _normalise(torch.as_tensor(images))
    y = torch.as_tensor(labels).long()
    model = {model}()
    model.load_state_dict(weights)
    if mode == "evaluate":
        return {{"nonce": nonce, "metrics": evaluate(model, x, y)}}
    plan = TrainPlan(**plan)
    metrics = train_epochs(model, make_optimizer(model, plan), x, y, plan, seed=seed)
    delta = {{k: v.detach() - weights[k] for k, v in model.state_dict().items()}}
    return {{"nonce": nonce, "delta": delta, "num_examples": metrics["examples"],
            "metrics": metrics}}
'''


def training_function_source(model_name: str) -> str:
    """The full source of the submitted function for ``model_name``."""
    model_cls = type(models.build_model(model_name))
    parts = [data._normalise, model_cls, training.make_optimizer, training.num_batches,
             training.train_epochs, training.predict, training.evaluate]
    inlined = "\n".join(textwrap.indent(inspect.getsource(p), "    ") for p in parts)
    header = _HEADER.format(name=FUNCTION_NAME, model=model_cls.__name__,
                            mean=data.MNIST_MEAN, std=data.MNIST_STD)
    return header + "\n" + inlined + _BODY.format(model=model_cls.__name__)


def load_training_function(model_name: str):
    """Import the generated function from a real file (PySyft reads its source)."""
    source = training_function_source(model_name)
    digest = hashlib.sha256(source.encode()).hexdigest()[:12]
    path = Path(cache_dir()) / "syft_code" / f"fedlearn_round_{digest}.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != source:
        path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"fedlearn_syft_code_{digest}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, FUNCTION_NAME)
