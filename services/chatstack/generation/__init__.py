"""The generation service: vLLM's AsyncLLM behind gRPC, streaming, with real cancellation."""
