"""The Ray Serve runtime: the same servicers as the standalone runtime, as autoscaled Serve
applications behind Serve's gRPC proxy."""
