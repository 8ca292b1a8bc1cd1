"""CLI commands of the chat model (`train chat`, `reply`); registered by importing this module."""
