"""Locust load tests of chatstack: gRPC users, a headless runner with reports, plots and an SLO gate.

`locustfile.py` and `grpc_user.py` import Locust (which monkey-patches the process with gevent);
`targets.py`, `report.py` and `run.py` do not, so tests and tools can import them safely.
"""
