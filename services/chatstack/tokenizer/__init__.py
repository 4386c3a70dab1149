"""The tokenizer service: HF `tokenizers` (Rust) behind gRPC."""
