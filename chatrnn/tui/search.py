"""ctrl+f: find a message in every stored conversation and open the conversation at it.

The results follow the typing (the store's search is an index lookup, see
:meth:`~chatrnn.tui.store.Store.search`); Enter or a click on one makes the branch holding that
message the conversation's active one, so it is on screen when the conversation opens (the branch
the user was on stays in the store, reachable with ``<``/``>``).
"""

from __future__ import annotations

import re
import time
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from chatrnn.errors import ChatrnnError
from chatrnn.tui.widgets import clean_text

#: Results listed (newest first).
SHOWN = 50


def snippet(text: str, query: str, width: int = 70) -> str:
    """One line of ``text`` around the first word of ``query`` it contains."""
    flat = re.sub(r"\s+", " ", text)
    words = query.split()
    at = flat.lower().find(words[0].lower()) if words else -1
    start = max(0, at - 12) if at >= 0 else 0  # a little context before the hit
    out = flat[start : start + width]
    return ("…" if start else "") + out + ("…" if start + width < len(flat) else "")


class SearchScreen(ModalScreen[tuple[int, int] | None]):
    """Type to search; the result is ``(conversation id, message id)``, or None (Esc)."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Close"), Binding("down", "to_results", show=False)]

    def __init__(self, store: Any, query: str = "") -> None:
        super().__init__()
        self.store = store
        self.query_text = query
        self.hits: list[tuple[int, int]] = []

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="search-box"):
            yield Label("Search every stored conversation", classes="dialog-title")
            yield Input(self.query_text, placeholder="words to find (all of them, any case)", id="search-input")
            yield OptionList(id="search-list")
            yield Static("", id="search-empty")
            yield Label("type to search · ↓/Enter to the results · Enter opens · Esc closes", classes="hint")

    def on_mount(self) -> None:
        self.query_one("#search-input", Input).focus()
        self.run_search(self.query_text)

    @on(Input.Changed, "#search-input")
    def _changed(self, event: Input.Changed) -> None:
        self.run_search(event.value)

    @on(Input.Submitted, "#search-input")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_to_results()

    def action_to_results(self) -> None:
        ol = self.query_one("#search-list", OptionList)
        if ol.option_count:
            ol.highlighted = ol.highlighted or 0
            ol.focus()

    def run_search(self, query: str) -> None:
        ol = self.query_one("#search-list", OptionList)
        ol.clear_options()
        self.hits = []
        empty = self.query_one("#search-empty", Static)
        if not query.strip():
            empty.update("")
            return
        try:
            found = self.store.search(query, limit=SHOWN)
        except ChatrnnError as e:
            empty.update(Text(clean_text(str(e), 300)))
            return
        for conv, message in found:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(message.created))
            who = "You" if message.role == "user" else "Bot"
            title = re.sub(r"\s+", " ", conv.title)[:30]
            line = f"{when}  {title:<30}  {who}: {snippet(message.text, query)}"
            line = line[: max(40, ol.size.width - 4)] if ol.size.width else line  # one line each
            ol.add_option(Option(Text(clean_text(line, 300)), id=str(len(self.hits))))
            self.hits.append((conv.id, message.id))
        empty.update("" if found else f"No message contains {query!r}.")

    @on(OptionList.OptionSelected, "#search-list")
    def _picked(self, event: OptionList.OptionSelected) -> None:
        cid, mid = self.hits[int(event.option.id)]
        try:
            self.store.set_active(cid, mid)  # the hit's branch is the one shown
        except ChatrnnError as e:
            self.notify(str(e), severity="error", title="search")
            return
        self.dismiss((cid, mid))
