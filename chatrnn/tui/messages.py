"""Messages the panes post to the app.

The panes never call the app by name: they say what happened or what the user asked for, and the
app (which owns the tabs, the dialogs and the store) decides what to do. That keeps a pane testable
on its own terms and lets the app change its methods without breaking a pane. ``post_message`` is
thread-safe, so worker threads use these too (``notify`` is not).
"""

from __future__ import annotations

from textual.message import Message


class Notice(Message):
    """A notification, usually from a worker thread; it bubbles up to the app, which shows it."""

    def __init__(self, text: str, severity: str = "information", title: str = "") -> None:
        super().__init__()
        self.text = text
        self.severity = severity
        self.title = title


class ConversationsChanged(Message):
    """The stored conversations changed (the list screen, if open, refreshes)."""


class NewConversation(Message):
    """The user asked for a fresh conversation (``/new``)."""


class ShowConversations(Message):
    """The user asked for the stored conversations (``/history``)."""


class PickModel(Message):
    """The user asked for the model picker (``/models``)."""


class LoadModel(Message):
    """The user asked for another checkpoint of ``kind`` (``/model NAME``)."""

    def __init__(self, kind: str, name: str) -> None:
        super().__init__()
        self.kind = kind
        self.name = name


class ExportConversation(Message):
    """The user asked to export a conversation (``/export [PATH]``; no path: the app asks for one)."""

    def __init__(self, conversation_id: int | None, path: str | None = None) -> None:
        super().__init__()
        self.conversation_id = conversation_id
        self.path = path


class OpenConversation(Message):
    """The user picked a stored message (ctrl+f search): open its conversation at that message."""

    def __init__(self, conversation_id: int, message_id: int | None = None) -> None:
        super().__init__()
        self.conversation_id = conversation_id
        self.message_id = message_id
