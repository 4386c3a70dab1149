"""chatstack: gRPC model-serving microservices for a ChatGPT-style assistant."""

__version__ = "0.1.0"
