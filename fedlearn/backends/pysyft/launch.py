"""Every step of the tutorial at once: Datasites launched, shards uploaded, code approved.

For tests, benchmarks, the advanced notebooks and ``fedlearn train --backend pysyft`` without
``--datasite``: one process plays every owner and the data scientist, so what the core
tutorial shows step by step happens here in one call.
"""
from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence

import numpy as np
import torch

from fedlearn.backends.pysyft.owner import Datasite
from fedlearn.backends.pysyft.review import RequestReview
from fedlearn.backends.pysyft.scientist import SyftWorker
from fedlearn.config import ConfigError, DPSGDConfig, ModelSpec
from fedlearn.data.normalisation import MNIST_NORMALISATION, Normalisation, normalise
from fedlearn.models import check_data_fits


def launch_syft_workers(images: np.ndarray, labels: np.ndarray, parts: Sequence[np.ndarray],
                        names: Sequence[str], *, model: ModelSpec,
                        max_calls: int, port: int | str | None = None,
                        scientist: tuple[str, str] | None = None, seed: int = 0,
                        force_approval: bool = False,
                        on_review: Callable[[RequestReview], None] | None = None,
                        dp: DPSGDConfig | None = None,
                        normalisation: Normalisation = MNIST_NORMALISATION, secure: bool = False,
                        topk: float | None = None) -> tuple[list[Datasite], list[SyftWorker]]:
    """Every step of the tutorial at once, for tests and benchmarks.

    For each name: launch a Datasite (random admin password), upload its part of
    (images, labels), register the data scientist (``scientist`` = (email,
    password); a random password by default), log in as them (never as admin),
    submit the code request, and approve it by its id as the owner — which runs
    fedlearn's checks on it (``force_approval``: approve despite them, e.g. for a
    model class of your own, which the owner must read; ``on_review`` sees each
    review). ``model`` is a ready-made name or your ``nn.Module`` class; ``dp``: the
    DP-SGD function with these settings instead of plain training. ``images`` are what
    :meth:`Datasite.upload` takes (uint8 or float32), normalised on the Datasite as
    ``normalisation`` declares; ``secure``: the secure-aggregation function; ``topk``: the
    top-k function sending that share of each tensor, its residual kept on the Datasite. Returns
    the Datasites (call ``land()`` on each) and the workers.
    """
    # the data is in hand here: what every round would refuse is refused before any launch
    if np.issubdtype(images.dtype, np.floating) and not np.isfinite(images).all():
        raise ConfigError("images", "contain NaN or infinite values")
    check_data_fits(model, normalise(torch.as_tensor(images[:2]), normalisation),
                    torch.as_tensor(labels))
    scientist = scientist or ("scientist@fedlearn.example", secrets.token_urlsafe(18))
    sites, workers = [], []
    try:
        for i, (name, part) in enumerate(zip(names, parts)):
            site = Datasite.launch(name, port=port)  # a random admin password
            sites.append(site)
            site.upload(images[part], labels[part], seed=seed + i)
            site.register_scientist(*scientist)
            worker = SyftWorker.connect(name, site.url or site.handle, email=scientist[0],
                                        password=scientist[1])
            review = site.approve(worker.submit(model, max_calls=max_calls, dp=dp,
                                                normalisation=normalisation, secure=secure,
                                                topk=topk),
                                  force=force_approval, warn=lambda message: None)
            if on_review is not None:
                on_review(review)
            workers.append(worker)
    except BaseException:
        for site in sites:
            site.land()
        raise
    return sites, workers
