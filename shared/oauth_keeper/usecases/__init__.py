"""Use cases: what the service does (connect, refresh, serve tokens, disconnect, erase, receive webhooks, sweep).

Each receives its ports in its constructor and imports only the domain, the ports and observability; the
composition root (`root.py`) wires them to AWS, tests and `local/` wire them to in-memory adapters.
"""
