"""Secrets leave no trace in the server child: approved code, running where approved code runs,
searches its own process for the admin and scientist passwords and finds neither.

The server child is a fork of ``serve``, which held both passwords (the frames of
``serve_command`` and ``serve``, ``Server.__init__``'s defaults ...). Before the fix
the probe found both in the child's frames and in objects the garbage collector tracks.
"""
from __future__ import annotations

import importlib.util

import requests
from target import ADMIN, EMAIL, SCIENTIST, owner_cli

PLACES = ("frames", "modules", "gc", "environ", "proc_environ")
KEY = 0x5A  # the probe's source carries the passwords XOR-ed, never as themselves

PROBE = '''
def fedlearn_secret_probe(labels, plan: dict, mode: str):
    """For each password: is it reachable from the frames, modules, gc-tracked objects,
    os.environ or /proc/self/environ of the process this runs in? Only booleans return."""
    import gc
    import os
    import sys

    raw = {name: bytes(b ^ KEY for b in bytes.fromhex(h)) for name, h in HIDDEN.items()}
    text = {name: value.decode() for name, value in raw.items()}
    mine = {id(v) for v in [*raw.values(), *text.values()]}
    here = sys._getframe()

    def holding(obj):
        """The names of the passwords inside ``obj`` (a str, bytes or bytearray)."""
        if id(obj) in mine:
            return set()
        if type(obj) is str:
            return {name for name, t in text.items() if t in obj}
        if type(obj) in (bytes, bytearray):
            return {name for name, r in raw.items() if r in obj}
        return set()

    def contents(obj):
        try:  # an object that will not list its contents holds nothing we can read
            if type(obj) is dict:
                return [*obj.keys(), *obj.values()]
            if type(obj) in (list, tuple, set, frozenset):
                return list(obj)
            return list(object.__getattribute__(obj, "__dict__").values())
        except Exception:
            return []

    def scan(roots, depth):
        """Names found within ``depth`` steps (dict items, sequence items, attributes)."""
        found, seen, level = set(), set(mine), list(roots)
        for _ in range(depth + 1):
            nxt = []
            for obj in level:
                if id(obj) in seen:
                    continue
                seen.add(id(obj))
                found |= holding(obj)
                nxt += contents(obj)
            level = nxt
        return found

    frames = []
    for frame in sys._current_frames().values():
        while frame is not None:
            if frame is not here:
                frames.append(dict(frame.f_locals))
            frame = frame.f_back
    in_frames = scan(frames, 4)
    in_modules = scan(list(sys.modules.values()), 4)
    in_gc = set()
    for obj in gc.get_objects():
        if obj is here:
            continue
        for ref in gc.get_referents(obj):
            kind = type(ref)
            if kind is str or kind is bytes or kind is bytearray:
                in_gc |= holding(ref)
            elif kind in (dict, tuple, list) and not gc.is_tracked(ref):
                in_gc |= scan([ref], 2)
    with open("/proc/self/environ", "rb") as block:
        environ_block = block.read()
    return {name: {"frames": name in in_frames, "modules": name in in_modules,
                   "gc": name in in_gc,
                   "environ": any(text[name] in v for v in os.environ.values()),
                   "proc_environ": raw[name] in environ_block} for name in raw}
'''


def probe_function(folder):
    """The probe as a function imported from a real file (syft submits its source)."""
    hidden = {name: bytes(b ^ KEY for b in secret.encode()).hex()
              for name, secret in (("admin", ADMIN), ("scientist", SCIENTIST))}
    source = PROBE.replace("HIDDEN", repr(hidden)).replace("KEY", str(KEY))
    assert ADMIN not in source and SCIENTIST not in source
    path = folder / "fedlearn_secret_probe.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("fedlearn_secret_probe", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.fedlearn_secret_probe


def run_probe_as_approved_code(served, folder) -> dict:
    """Submit the probe as the scientist, approve it as the owner (``--force``: it is not
    fedlearn's code), run it on the Datasite and return what it found."""
    from fedlearn.backends.pysyft import require_syft
    from fedlearn.backends.pysyft.connection import login

    sy = require_syft()
    from syft.service.policy.policy import OutputPolicyExecuteCount

    scientist = login(served.url, EMAIL, SCIENTIST)
    labels = scientist.datasets["mnist"].assets["labels"]  # a private input: a real run
    code = sy.syft_function(input_policy=sy.MixedInputPolicy(client=scientist, labels=labels,
                                                             plan=dict, mode=str),
                            output_policy=OutputPolicyExecuteCount(limit=1))(
        probe_function(folder))
    request_id = str(scientist.code.request_code_execution(code).id)
    approve = owner_cli(served, "approve", request_id, "--force")  # in this process: run_cli
    assert approve.returncode == 0, approve.stdout + approve.stderr
    assert "despite" in approve.stderr  # the owner was warned
    pointer = scientist.code.fedlearn_secret_probe(labels=labels, plan={}, mode="probe")
    found = pointer.get() if hasattr(pointer, "get") else pointer
    assert isinstance(found, dict), found
    return found


def test_approved_code_finds_no_password_in_the_server_child(served, tmp_path):
    found = run_probe_as_approved_code(served, tmp_path)
    assert set(found) == {"admin", "scientist"}
    for name, places in found.items():
        assert set(places) == set(PLACES), places
        assert not any(places.values()), f"the {name} password is readable there: {places}"
    assert requests.get(served.url + "/api/v2/metadata", timeout=30).status_code == 200


def test_the_probe_finds_a_password_where_one_is_held(tmp_path, monkeypatch):
    """The probe itself works: run here, where this test holds both passwords."""
    monkeypatch.setenv("FEDLEARN_PROBE_CHECK", SCIENTIST)
    held = {"admin": "".join([ADMIN[:3], ADMIN[3:]])}  # noqa: F841 (a frame holds it)
    found = probe_function(tmp_path)(labels=None, plan={}, mode="probe")
    assert found["admin"]["frames"] and found["admin"]["gc"]
    assert found["scientist"]["environ"] and found["scientist"]["modules"]  # target.SCIENTIST
