"""The chat's message box: a TextArea that grows to a few lines, sends on Enter, and recalls
earlier prompts.

Why a TextArea and not an Input: people paste code, lists and whole paragraphs into a chat, and
an Input flattens them into one line. Enter still sends (what every chat app does); shift+enter
or ctrl+j inserts a newline (many terminals cannot tell shift+enter from Enter, ctrl+j always
arrives). A bracketed paste (Textual's ``Paste`` event) goes in as one block, newlines and all,
up to :data:`MAX_INPUT` characters in the box; the rest is left out with a notice that says how
much, rather than the app freezing on a multi-megabyte paste.

Up on the first line (down on the last) walks the prompt history, as a shell does; what was being
typed comes back after the newest entry.
"""

from __future__ import annotations

from typing import Any

from textual import events
from textual.message import Message
from textual.widgets import TextArea

#: Most characters the box holds. A 100 KB message (the store's and the model's tested maximum)
#: fits with room to spare; past this a paste is cut, and the notice says so.
MAX_INPUT = 200_000
#: Prompts kept for up/down.
HISTORY_KEEP = 500


class ChatInput(TextArea):
    """A multi-line message box. Posts :class:`ChatInput.Submitted` on Enter."""

    DEFAULT_CSS = """
    ChatInput {
        height: auto;
        min-height: 3;
        max-height: 8;
        border: tall $border-blurred;
        padding: 0 1;
    }
    ChatInput:focus {
        border: tall $border;
    }
    ChatInput .text-area--cursor-line {
        background: transparent;
    }
    """

    class Submitted(Message):
        """Enter was pressed: ``value`` is the box's text (the box is not cleared here)."""

        def __init__(self, chat_input: ChatInput, value: str) -> None:
            super().__init__()
            self.input = chat_input
            self.value = value

        @property
        def control(self) -> ChatInput:
            return self.input

    def __init__(self, text: str = "", *, placeholder: str = "", **kw: Any) -> None:
        super().__init__(
            text, soft_wrap=True, show_line_numbers=False, tab_behavior="focus", placeholder=placeholder, **kw
        )
        self.prompts: list[str] = []
        self._history_at: int | None = None  # index into history while walking it
        self._draft = ""  # what was typed before walking the history

    # ---- value: the Input-like name the rest of the app (and its tests) use ------------------
    @property
    def value(self) -> str:
        return self.text

    @value.setter
    def value(self, text: str) -> None:
        self.load_text(text)
        self.move_cursor(self.document.end)

    # ---- keys --------------------------------------------------------------------------------
    async def _on_key(self, event: events.Key) -> None:
        if event.key == "enter":
            event.stop()
            event.prevent_default()
            self.post_message(self.Submitted(self, self.text))
            return
        if event.key in ("shift+enter", "ctrl+j"):
            event.stop()
            event.prevent_default()
            self._insert("\n")
            return
        await super()._on_key(event)

    def _insert(self, text: str) -> None:
        start, end = self.selection
        result = self._replace_via_keyboard(text, start, end)
        if result is not None:
            self.move_cursor(result.end_location)

    async def _on_paste(self, event: events.Paste) -> None:
        """One block, newlines kept, up to :data:`MAX_INPUT` characters in the box."""
        event.stop()
        event.prevent_default()
        if self.read_only:
            return
        text = event.text.replace("\r\n", "\n").replace("\r", "\n")
        start, end = self.selection
        room = MAX_INPUT - (len(self.text) - len(self.get_text_range(start, end)))
        if len(text) > room:
            cut = len(text) - max(0, room)
            text = text[: max(0, room)]
            self.notify(
                f"the paste was {len(event.text):,} characters; the last {cut:,} were left out "
                f"(the message box holds {MAX_INPUT:,})",
                severity="warning",
                title="paste",
                timeout=8,
            )
        if text:
            self._insert(text)
        self.focus()

    def action_cursor_up(self, select: bool = False) -> None:
        if not select and self.cursor_location[0] == 0 and self.prompts:
            self.recall(-1)
            return
        super().action_cursor_up(select)

    def action_cursor_down(self, select: bool = False) -> None:
        if not select and self.cursor_location[0] == self.document.line_count - 1 and self._history_at is not None:
            self.recall(+1)
            return
        super().action_cursor_down(select)

    # ---- history -----------------------------------------------------------------------------
    def remember(self, text: str) -> None:
        """Add a sent prompt to the history (not twice in a row) and stop walking it."""
        if text.strip() and (not self.prompts or self.prompts[-1] != text):
            self.prompts.append(text)
            del self.prompts[:-HISTORY_KEEP]
        self._history_at = None
        self._draft = ""

    def recall(self, step: int) -> None:
        """Older (``-1``) or newer (``+1``) prompt; past the newest, the draft comes back."""
        if self._history_at is None:
            if step > 0:
                return
            self._draft = self.text
            at = len(self.prompts) - 1
        else:
            at = self._history_at + step
        if at < 0:
            return
        if at >= len(self.prompts):
            self._history_at = None
            self.value = self._draft
            return
        self._history_at = at
        self.load_text(self.prompts[at])
        # older prompts: cursor at the start, so up again goes further back; newer ones: at the end
        self.move_cursor((0, 0) if step < 0 else self.document.end)
