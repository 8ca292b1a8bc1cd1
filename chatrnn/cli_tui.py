"""The `chat` CLI command (TUI and plain mode); registered by importing this module."""
