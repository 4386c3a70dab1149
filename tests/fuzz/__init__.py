"""Property-based fuzzing of every RPC of every chatstack service over real gRPC.

`make test` runs a small deterministic profile; `make fuzz` the long one (CHATSTACK_FUZZ_PROFILE=long).
"""
