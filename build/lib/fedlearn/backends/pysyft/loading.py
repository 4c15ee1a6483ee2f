"""Importing syft 0.9.5 — or saying clearly why it cannot be — hardened, with one speed fix.

The only place fedlearn imports syft: small and easy to audit. Every process that
gets syft through :func:`require_syft` (owner's server, data scientist's client)
runs with :mod:`fedlearn.backends.pysyft.hardening` applied.
"""
from __future__ import annotations

from fedlearn.errors import FedlearnError

SYFT_VERSION = "0.9.5"
# the root account every syft 0.9.5 Datasite gets unless told otherwise (published)
PYSYFT_DEFAULT_EMAIL, PYSYFT_DEFAULT_PASSWORD = "info@openmined.org", "changethis"


class SyftUnavailableError(FedlearnError, ImportError):
    """syft 0.9.5 is not installed (or cannot be on this Python)."""


def require_syft():
    """Import syft 0.9.5 or raise a clear error saying how to get it or what to do instead."""
    from fedlearn.backends.pysyft.syft_environment import scrub

    scrub()  # syft reads its weakening switches when imported: they go first
    try:
        import syft
    except Exception as exc:  # ModuleNotFoundError, or e.g. sniffio missing inside kr8s
        raise SyftUnavailableError(
            f"the PySyft backend needs syft=={SYFT_VERSION} ({type(exc).__name__}: {exc}). "
            "Install it on Python 3.10-3.12 with: pip install 'syft==0.9.5' sniffio — or use "
            "the in-process workers (fedlearn.workers.VirtualWorker), which need no PySyft."
        ) from exc
    if syft.__version__ != SYFT_VERSION:
        raise SyftUnavailableError(
            f"the PySyft backend needs syft=={SYFT_VERSION}, the last Datasite-API release; "
            f"found {syft.__version__} (0.10 is a different product). Install syft==0.9.5.")
    from fedlearn.backends.pysyft.hardening import harden

    harden(syft)
    _skip_bytes_in_attribute_walk()
    from fedlearn.backends.pysyft.http_door import sign_api_requests

    sign_api_requests()  # a served Datasite's door serves GET /api only to signed logins
    return syft


def set_root_credentials(email: str, password: str) -> None:
    """Make Datasites launched from now on in this process (and their forked HTTP servers)
    create their root admin with these credentials instead of PySyft's published
    ``info@openmined.org`` / ``changethis``.

    syft 0.9.5 binds the defaults of ``Server.__init__`` when it is imported, from
    ``DEFAULT_ROOT_PASSWORD``; launches never pass them, so the defaults are replaced.
    """
    from syft.server.server import Server

    defaults = Server.__init__.__kwdefaults__
    defaults["root_email"], defaults["root_password"] = email, password


def _skip_bytes_in_attribute_walk() -> None:
    """Work around a syft 0.9.5 slowdown without changing what it does.

    After every service call syft walks the result to attach client attributes
    to nested SyftObjects (``attach_attribute_to_syft_object``). ``bytes`` is a
    ``Sequence``, so serialized blobs (the weights, the asset's bytes) are walked
    one byte at a time: about 2 s of pure Python per training call at 30,000
    images. Bytes and strings cannot contain SyftObjects, so skipping them gives
    the same result. 0.9.5 is frozen; no upstream fix is coming.
    """
    import syft.service.service as service
    import syft.types.syft_object as syft_object

    original = syft_object.attach_attribute_to_syft_object
    if getattr(original, "_fedlearn_patched", False):
        return

    def attach_attribute_to_syft_object(result, attr_dict):
        if isinstance(result, (bytes, bytearray, memoryview, str)):
            return None
        return original(result, attr_dict)

    setattr(attach_attribute_to_syft_object, "_fedlearn_patched", True)
    syft_object.attach_attribute_to_syft_object = attach_attribute_to_syft_object  # recursion
    service.attach_attribute_to_syft_object = attach_attribute_to_syft_object  # its caller
