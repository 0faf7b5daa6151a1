"""What a sender runs on its own side: the SDK (mint links, register sends), email instrumenting, recipient ids."""
