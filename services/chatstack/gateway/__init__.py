"""The gateway (ChatService): one Chat call runs session -> tokenizer -> generation -> reward -> session."""
