"""``chatrnn chat``: the Textual app. Two tabs (Chat with the seq2seq model, Generate with the char
LM), a model picker, stored conversations, help, the command palette.

The app never touches torch: models are loaded by a thread worker through
:class:`~chatrnn.tui.loading.ModelLoader` (swappable, which is how tests inject scripted models) and
run by the panes' thread workers (``streaming.py``), and their tokens reach the UI through messages.
The panes (``chat.py``, ``generate.py``) never call the app: they post the messages of
``messages.py``, and the handlers here decide what happens.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Header, Input, Label, Markdown, OptionList, Static, TabbedContent, TabPane
from textual.widgets.option_list import Option

from chatrnn.checkpoint import checkpoints_root
from chatrnn.decoding import GenerateSettings, ReplySettings, from_dict
from chatrnn.errors import ChatrnnError
from chatrnn.tui.chat import SLASH_HELP, ChatPane
from chatrnn.tui.generate import GeneratePane
from chatrnn.tui.loading import (
    CHAT,
    KIND_LABEL,
    LM,
    CheckpointInfo,
    ModelLoader,
    NoCheckpoint,
    discover,
    missing_message,
    model_label,
    settle_heap,
    train_hint,
)
from chatrnn.tui.messages import (
    ConversationsChanged,
    ExportConversation,
    LoadModel,
    NewConversation,
    Notice,
    OpenConversation,
    PickModel,
    ShowConversations,
)
from chatrnn.tui.streaming import StreamingPane
from chatrnn.tui.widgets import clean_text

log = logging.getLogger(__name__)

HELP = f"""\
# chatrnn

**Chat** talks to the seq2seq model, **Generate** samples from the char LM.
Both run in background threads: the screen never freezes, and **Esc** stops them.

## Keys

| key | what |
| --- | --- |
| Enter | send the message / generate from the seed |
| shift+enter, ctrl+j | Chat: a new line in the message (a pasted block keeps its lines) |
| ↑ / ↓ | Chat: earlier prompts (on the first / last line of the message box) |
| Esc | stop the reply or the generation in progress |
| F2 / F3 | Chat tab / Generate tab |
| ctrl+t | Chat: attention and hidden-state heatmaps of the last reply · Generate: top candidates per step |
| a | on a focused reply (Tab to it): its attention heatmap |
| ctrl+r | Chat: another reply to the last message (the old one is kept) · Generate: again from the same seed |
| < / > | on a focused message: its previous / next alternative (regenerated, picked, edited) and its branch |
| e | on a focused message of yours (on a reply: the message it answers): edit it; sending branches, the old is kept |
| 1-9 | on a focused reply with an n-best list (`/beam 4`, `/nbest 3`): make that one the reply |
| c / C | on a focused message: copy it / the whole conversation (OSC 52: works over SSH); the mouse selects too |
| ctrl+f | Chat: search every stored conversation, Enter opens the conversation at that message |
| [ / ] | Generate: temperature -0.1 / +0.1 (outside the text boxes; or type it) |
| ctrl+b | Generate: temperatures side by side (one seed, 2 to 4 temperatures at once) |
| ctrl+g | Generate: Neurons view (the text coloured by one unit; ←/→ ↑/↓ move the cursor) |
| F6 | Generate: adapt the char model to a text file (dynamic evaluation); status: its loss before → after |
| ctrl+n | new conversation |
| ctrl+l | stored conversations: open, rename, delete, export |
| ctrl+s | export this conversation to Markdown |
| ctrl+o | model picker: every checkpoint found, with size and best val loss |
| F4 | Runs: every checkpoint with its loss curve, best val loss, size, corpus, time; live while one trains |
| ctrl+p | command palette: every action by name |
| F1 | this help |
| ctrl+q | quit |

## Chat commands

```
{SLASH_HELP}
```

## What the views show

**Attention**: one row per reply piece, one column per prompt piece (the subword units the model
read: earlier turns, then your message). Brighter means the decoder looked there more when it
produced that piece; ◆ marks where it looked most.

**Hidden state** (beside the attention): right of each reply row, the decoder's units that moved
most over the reply, coloured by how much each moved at that piece (|h_t - h_(t-1)|); under each
prompt column, the same for the encoder.

**Candidates**: at each generated character, the model's most likely next characters and their
probabilities *after* temperature, top-k and top-p: raise the temperature and watch the
distribution flatten; lower it and the top candidate takes everything.

**Side by side** (ctrl+b): one seed, two to four temperatures (type them: `0.5 0.8 1.1`), streamed
at once in columns with the same random draws, each with its candidates and how sure it was
(mean probability of the chosen characters).

**Neurons** (ctrl+g): the text coloured by one unit of the char LM (blue negative, white zero,
red positive) as the model read it, live while it streams. Type the unit as `layer:unit`
(`1:42`, or `1:42:c` for its cell state, `1:42:f` for its forget gate), or pick one of the units
ranked per text feature (quotes, line position, word starts...: `chatrnn neurons`), computed on
the checkpoint's validation text in the background and cached in `neurons.json` next to the
weights. The strip under the text shows the unit's h, c and its i/f/o gates at the cursor.

Decoding settings can also be given as flags or environment variables
(`chatrnn chat --temperature 0.7`, `CHATRNN_TEMPERATURE=0.7`); each conversation keeps its own.
"""


class Tabs(TabbedContent):
    """The two tabs. Unlike TabbedContent, focus moving into the hidden tab (a dialog closing
    restores focus to where it was before a tab switch) does not switch back: the tab the user
    (or an action) chose stays, and focus goes to its input."""

    def _on_tab_pane_focused(self, event: TabPane.Focused) -> None:
        wanted = getattr(self.app, "wanted_tab", None)
        if wanted and event.tab_pane.id != wanted:
            event.prevent_default()
            event.stop()
            self.app._focus_tab(wanted)


class ModelLoaded(Message):
    """A load ended: ``model`` (possibly with a ``warning``: its trial run failed), or an ``error``
    (``missing``: there is no checkpoint of that kind at all)."""

    def __init__(
        self,
        kind: str,
        model: object,
        name: str,
        error: str | None = None,
        missing: bool = False,
        warning: str | None = None,
    ) -> None:
        super().__init__()
        self.kind, self.model, self.name, self.error, self.missing = kind, model, name, error, missing
        self.warning = warning


# ---------------------------------------------------------------------------------------------
# screens


class HelpScreen(ModalScreen):
    BINDINGS = [Binding("escape,f1,q", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with Vertical(id="help-box", classes="dialog"):
            yield Markdown(HELP, id="help-text")
            yield Label("Esc closes", classes="hint")


class PromptScreen(ModalScreen[str | None]):
    """One line of input (a title, a path); Enter accepts, Esc cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, value: str = "", placeholder: str = "") -> None:
        super().__init__()
        self.title_text, self.value, self.placeholder = title, value, placeholder

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog small"):
            yield Label(self.title_text, classes="dialog-title")
            yield Input(self.value, placeholder=self.placeholder, id="prompt-input")
            yield Label("Enter accepts · Esc cancels", classes="hint")

    @on(Input.Submitted)
    def _ok(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS = [Binding("y,enter", "yes", "Yes"), Binding("n,escape", "no", "No")]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog small"):
            yield Label(self.question, classes="dialog-title")
            yield Label("y / Enter: yes · n / Esc: no", classes="hint")

    def action_yes(self) -> None:
        self.dismiss(True)

    def action_no(self) -> None:
        self.dismiss(False)


class ModelPickerScreen(ModalScreen[CheckpointInfo | None]):
    """Every checkpoint under checkpoints/ with its kind, size and best validation loss."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Close"), Binding("f5", "rescan", "Rescan")]

    def __init__(self, extra: list[str] | None = None) -> None:
        super().__init__()
        self.extra = extra or []
        self.infos: list[CheckpointInfo] = []

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="picker-box"):
            yield Label(Text(clean_text(f"Models under {checkpoints_root()}/", 300)), classes="dialog-title")
            yield Static(f"{'name':<24} {'kind':<15} {'params':>7} {'size':>9} {'best val':>9}", classes="table-head")
            yield OptionList(id="picker-list")
            yield Static("", id="picker-empty", markup=False)  # the hint quotes the checkpoints root
            yield Label("Enter loads · F5 rescans · Esc closes", classes="hint")

    def on_mount(self) -> None:
        self.action_rescan()

    def action_rescan(self) -> None:
        self.infos = discover(extra=self.extra)
        ol = self.query_one(OptionList)
        ol.clear_options()
        for i, info in enumerate(self.infos):
            kind = KIND_LABEL.get(info.kind or "", "?")
            line = (
                f"{info.name[:24]:<24} {kind:<15} {info.params_text():>7} {info.size_text():>9} {info.loss_text():>9}"
            )
            if info.problem:
                line += f"  (unreadable: {info.problem})"
            # as Text: names and reasons come from the folder (``[@click=app.quit]``), never markup
            ol.add_option(Option(Text(clean_text(line, 300)), id=str(i), disabled=not info.usable))
        empty = self.query_one("#picker-empty", Static)
        empty.update("" if self.infos else train_hint())
        empty.display = not self.infos
        ol.display = bool(self.infos)
        if self.infos:
            ol.focus()

    @on(OptionList.OptionSelected, "#picker-list")
    def _picked(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.infos[int(event.option.id)])


class ConversationsScreen(ModalScreen[None]):
    """Stored conversations: open, rename, delete, export."""

    BINDINGS = [
        Binding("escape", "dismiss(None)", "Close"),
        Binding("r", "rename", "Rename"),
        Binding("d,delete", "delete", "Delete"),
        Binding("e", "export", "Export"),
        Binding("n", "new", "New"),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="history-box"):
            yield Label("Conversations", classes="dialog-title")
            yield OptionList(id="history-list")
            yield Static("", id="history-empty")
            yield Label("Enter opens · r renames · d deletes · e exports · n new · Esc closes", classes="hint")

    def on_mount(self) -> None:
        self.refresh_list()

    def refresh_list(self, keep: int | None = None) -> None:
        app: ChatrnnApp = self.app  # type: ignore[assignment]
        try:
            convs = app.store.list_conversations()
        except ChatrnnError as e:
            app.notify(str(e), severity="error", title="history")
            convs = []
        ol = self.query_one(OptionList)
        ol.clear_options()
        for c in convs:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(c.updated))
            mode = "chat" if c.mode == "chat" else "gen "
            title = re.sub(r"\s+", " ", c.title)[:60]
            # as Text: a title is whatever the user (or a model) typed, never markup or control codes
            ol.add_option(Option(Text(clean_text(f"{when}  {mode}  {title}", 200)), id=str(c.id)))
        empty = self.query_one("#history-empty", Static)
        empty.update("No stored conversations yet." if not convs else "")
        empty.display = not convs
        if convs:
            index = 0
            if keep is not None:
                ids = [c.id for c in convs]
                index = ids.index(keep) if keep in ids else 0
            ol.highlighted = index
            ol.focus()

    @property
    def selected(self) -> int | None:
        ol = self.query_one(OptionList)
        if ol.highlighted is None or ol.option_count == 0:
            return None
        return int(ol.get_option_at_index(ol.highlighted).id)

    @on(OptionList.OptionSelected, "#history-list")
    def _open(self, event: OptionList.OptionSelected) -> None:
        self.app.open_conversation(int(event.option.id))
        self.dismiss(None)

    def action_new(self) -> None:
        self.app.action_new_conversation()
        self.dismiss(None)

    def action_rename(self) -> None:
        cid = self.selected
        if cid is None:
            return
        app: ChatrnnApp = self.app  # type: ignore[assignment]
        try:
            title = app.store.get_conversation(cid).title
        except ChatrnnError as e:
            app.notify(str(e), severity="error")
            return

        def done(value: str | None) -> None:
            if value is None:
                return
            try:
                app.store.rename(cid, value)
            except ChatrnnError as e:
                app.notify(str(e), severity="warning", title="rename")
            self.refresh_list(keep=cid)

        app.push_screen(PromptScreen("New title", title), done)

    def action_delete(self) -> None:
        cid = self.selected
        if cid is None:
            return
        app: ChatrnnApp = self.app  # type: ignore[assignment]

        def done(yes: bool | None) -> None:
            if yes:
                app.delete_conversation(cid)
                self.refresh_list()

        app.push_screen(ConfirmScreen("Delete this conversation and all its messages?"), done)

    def action_export(self) -> None:
        cid = self.selected
        if cid is not None:
            self.app.export_conversation(cid)


# ---------------------------------------------------------------------------------------------
# the app


class ChatrnnApp(App):
    CSS_PATH = "app.tcss"
    TITLE = "chatrnn"
    BINDINGS = [
        Binding("ctrl+q", "quit", "Quit", priority=True),
        Binding("f1", "help", "Help"),
        Binding("f2", "tab('chat')", "Chat", show=False),
        Binding("f3", "tab('generate')", "Generate", show=False),
        Binding("ctrl+n", "new_conversation", "New"),
        Binding("ctrl+l", "conversations", "History"),
        Binding("ctrl+s", "export", "Export"),
        Binding("ctrl+o", "pick_model", "Models"),
        Binding("f4", "runs", "Runs"),
    ]

    def __init__(
        self,
        *,
        chat_checkpoint: str | None = None,
        lm_checkpoint: str | None = None,
        db_path: str | Path | None = None,
        store=None,
        reply_settings: ReplySettings | None = None,
        generate_settings: GenerateSettings | None = None,
        loader: ModelLoader | None = None,
        device: str = "cpu",
        load_models: bool = True,
    ) -> None:
        super().__init__()
        self.chat_checkpoint = chat_checkpoint
        self.lm_checkpoint = lm_checkpoint
        self.db_path = db_path
        self.store = store
        self.reply_settings = reply_settings or ReplySettings()
        self.generate_settings = generate_settings or GenerateSettings()
        self.loader = loader or ModelLoader(device)
        self.load_models = load_models
        self.wanted_tab = "chat"
        self.store_message: str | None = None

    def notify(self, message: str, *, title: str = "", severity="information", timeout=None, markup=False) -> None:
        """Every notification as text: they quote errors, file names and checkpoint strings, which
        must neither be parsed as markup (``[@click=app.quit]``) nor reach the terminal as control
        characters. Panes' ``notify`` ends here too (``Widget.notify`` calls the app's)."""
        kw = {} if timeout is None else {"timeout": timeout}
        super().notify(clean_text(message), title=clean_text(title, 200), severity=severity, markup=False, **kw)

    # ---- layout ---------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        with Tabs(initial="chat", id="tabs"):
            with TabPane("Chat", id="chat"):
                yield ChatPane(self.reply_settings, id="chat-pane")
            with TabPane("Generate", id="generate"):
                yield GeneratePane(self.generate_settings, id="gen-pane")
        yield Footer()

    @property
    def chat(self) -> ChatPane:
        return self.query_one(ChatPane)

    @property
    def gen(self) -> GeneratePane:
        return self.query_one(GeneratePane)

    def on_mount(self) -> None:
        # Model threads and the UI share the GIL; a 1 ms switch interval (default 5 ms) lets a key
        # press or a token through sooner when the other side is busy in Python code.
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(self._switch_interval, 0.001))
        self._open_store()
        self.query_one("#chat-input").focus()
        if self.load_models:
            self.load_model(CHAT, self.chat_checkpoint)
            self.load_model(LM, self.lm_checkpoint)
        else:
            self.chat.set_no_model()
            self.gen.set_no_model()

    def on_unmount(self) -> None:
        sys.setswitchinterval(getattr(self, "_switch_interval", 0.005))

    def _open_store(self) -> None:
        """Open the conversation history (or use the one given) and hand it to the panes, which
        store their runs from their worker threads."""
        if self.store is None:
            self._open_db()
        for pane in self.query(StreamingPane):
            pane.store = self.store

    def _open_db(self) -> None:
        from chatrnn.tui.store import Store, default_db_path

        path = Path(self.db_path) if self.db_path else default_db_path()
        try:
            self.store, message = Store.open(path, busy_timeout=1.5)
        except ChatrnnError as e:
            self.store, message = Store(":memory:"), f"{e} This session will not be saved."
        except Exception as e:  # never let the history keep the app from starting
            self.store, message = (
                Store(":memory:"),
                (
                    f"could not open the conversation history {path} "
                    f"({e.__class__.__name__}: {e}); this session will not be saved."
                ),
            )
        self.store_message = message
        if message:
            self.notify(message, severity="warning", title="history", timeout=15)

    # ---- models ---------------------------------------------------------------------------
    def pane(self, kind: str) -> StreamingPane:
        return self.chat if kind == CHAT else self.gen

    def load_model(self, kind: str, name: str | None = None) -> None:
        """Load checkpoint ``name`` (None: the default) of ``kind`` into its pane, in a worker."""
        self.pane(kind).set_loading(str(name or ""))
        self._load(kind, name)

    @work(thread=True, group="load", exit_on_error=False)
    def _load(self, kind: str, name: str | None) -> None:
        """Load, then warm up: a model that loads but fails its trial run still reaches its pane
        (the failure may be specific to the trial), with a warning on screen and in the log."""
        label = str(name or "")
        try:
            model = self.loader.load(kind, name)
        except NoCheckpoint as e:
            self.post_message(ModelLoaded(kind, None, label, str(e), missing=True))
            return
        except ChatrnnError as e:
            self.post_message(ModelLoaded(kind, None, label, str(e)))
            return
        except Exception as e:  # a damaged file torch chokes on, a bug: a notification, not a crash
            log.exception("loading the %s model %r failed", kind, label)
            self.post_message(ModelLoaded(kind, None, label, f"{e.__class__.__name__}: {e}"))
            return
        warning = None
        try:
            self.loader.warm(kind, model)
        except Exception as e:
            log.warning("the trial run of the %s model %s failed", kind, model_label(model), exc_info=True)
            warning = str(e) if isinstance(e, ChatrnnError) else f"{e.__class__.__name__}: {e}"
        settle_heap()
        self.post_message(ModelLoaded(kind, model, label, warning=warning))

    def on_model_loaded(self, event: ModelLoaded) -> None:
        if not self.screen_stack:
            return
        pane = self.pane(event.kind)
        if event.model is not None:
            label = model_label(event.model)
            pane.set_model(event.model, label)
            if event.warning:
                self.notify(
                    f"{KIND_LABEL[event.kind]} model {label} loaded, but its trial run failed: {event.warning}",
                    severity="warning",
                    title="model",
                    timeout=10,
                )
            else:
                self.notify(f"{KIND_LABEL[event.kind]} model {label} loaded", title="model", timeout=3)
            return
        if event.missing:
            pane.set_no_model(train_hint(event.kind))
            if event.kind == CHAT:
                self.notify(missing_message(CHAT), severity="warning", title="model")
        else:
            pane.set_no_model(
                f"{event.error}\n\nPick another model with ctrl+o, or train one with "
                f"`chatrnn train {'chat' if event.kind == CHAT else 'charlm'}`."
            )
            self.notify(event.error or "could not load the model", severity="error", title="model", timeout=10)

    def action_pick_model(self) -> None:
        extra = [p for p in (self.chat_checkpoint, self.lm_checkpoint) if p]

        def picked(info: CheckpointInfo | None) -> None:
            if info is None:
                return
            self.load_model(info.kind or LM, str(info.path))
            self.action_tab("chat" if info.kind == CHAT else "generate")

        self.push_screen(ModelPickerScreen(extra), picked)

    # ---- navigation -----------------------------------------------------------------------
    def action_tab(self, name: str) -> None:
        self.wanted_tab = name
        self.query_one(TabbedContent).active = name
        self._focus_tab(name)

    @on(TabbedContent.TabActivated)
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        pane = event.pane.id or "chat"
        if pane != self.query_one(TabbedContent).active:
            return  # a stale event: another switch came after it
        self.wanted_tab = pane  # a click on a tab, or the tab bar's arrow keys
        focused = self.focused
        if focused is None or not any(a.id == pane for a in focused.ancestors_with_self):
            self._focus_tab(pane)

    def _focus_tab(self, name: str) -> None:
        """Focus the tab's input (on the main screen, even while a dialog is still closing)."""
        target = self.query_one("#chat-input" if name == "chat" else "#gen-seed")
        if self.screen_stack:
            self.screen_stack[0].set_focus(target)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_adapt_file(self) -> None:
        """Generate tab: a path prompt, then the pane adapts its model to that file (a worker)."""
        self.action_tab("generate")

        def done(path: str | None) -> None:
            if path:
                self.gen.start_adapt(path)

        self.push_screen(PromptScreen("Adapt the char model to a text file", "", "path to a text file"), done)

    def action_runs(self) -> None:
        from chatrnn.tui.runs import RunsScreen

        if not isinstance(self.screen, RunsScreen):
            self.push_screen(RunsScreen(extra=[p for p in (self.chat_checkpoint, self.lm_checkpoint) if p]))

    def action_conversations(self) -> None:
        if not isinstance(self.screen, ConversationsScreen):
            self.push_screen(ConversationsScreen())

    # Worker threads post these; one may arrive while the app is closing (no screen left).
    def on_notice(self, event: Notice) -> None:
        if self.screen_stack:
            self.notify(event.text, severity=event.severity, title=event.title)  # type: ignore[arg-type]

    def on_conversations_changed(self, event: ConversationsChanged) -> None:
        top = self.screen_stack[-1] if self.screen_stack else None
        if isinstance(top, ConversationsScreen):
            top.refresh_list(keep=top.selected)

    # What the user asked a pane for (its slash commands).
    def on_new_conversation(self, event: NewConversation) -> None:
        self.action_new_conversation()

    def on_show_conversations(self, event: ShowConversations) -> None:
        self.action_conversations()

    def on_pick_model(self, event: PickModel) -> None:
        self.action_pick_model()

    def on_load_model(self, event: LoadModel) -> None:
        self.load_model(event.kind, event.name)

    def on_export_conversation(self, event: ExportConversation) -> None:
        self.export_conversation(event.conversation_id, event.path)

    def on_open_conversation(self, event: OpenConversation) -> None:
        self.open_conversation(event.conversation_id)
        if event.message_id is not None and self.chat.conversation_id == event.conversation_id:
            mid = event.message_id
            self.call_after_refresh(lambda: self.chat.focus_message(mid))

    # ---- conversations --------------------------------------------------------------------
    @property
    def active_tab(self) -> str:
        return self.query_one(TabbedContent).active or "chat"

    def action_new_conversation(self) -> None:
        if self.active_tab == "generate":
            self.gen.new_session()
            self.notify("new generate session", timeout=2)
        else:
            self.chat.new_conversation()
            self.action_tab("chat")

    def open_conversation(self, cid: int) -> None:
        try:
            conv = self.store.get_conversation(cid)
            messages = self.store.messages(cid)
        except ChatrnnError as e:
            self.notify(str(e), severity="error", title="history")
            return
        if conv.mode == "generate":
            self.gen.conversation_id = conv.id
            stored = (conv.settings or {}).get("generate")
            if isinstance(stored, dict):
                try:
                    self.gen.apply_settings(from_dict(GenerateSettings, stored))
                except (TypeError, ValueError):
                    pass
            users = [m for m in messages if m.role == "user"]
            bots = [m for m in messages if m.role == "bot"]
            self.gen.show_output(users[-1].text if users else "", bots[-1].text if bots else "")
            self.action_tab("generate")
        else:
            self.chat.load_conversation(conv, messages)
            self.action_tab("chat")
        self.notify(f"opened {conv.title!r}", title="history", timeout=3)

    def delete_conversation(self, cid: int) -> None:
        try:
            self.store.delete(cid)
        except ChatrnnError as e:
            self.notify(str(e), severity="error", title="history")
            return
        if self.chat.conversation_id == cid:
            self.chat.new_conversation()
        if self.gen.conversation_id == cid:
            self.gen.conversation_id = None
        self.notify("conversation deleted", title="history", timeout=3)

    def action_export(self) -> None:
        cid = self.pane(CHAT if self.active_tab == "chat" else LM).conversation_id
        self.export_conversation(cid)

    def export_conversation(self, cid: int | None, path: str | None = None) -> None:
        """Write conversation ``cid`` as Markdown to ``path`` (asked for when not given)."""
        if cid is None:
            self.notify("nothing to export yet: this conversation has no messages", severity="warning", title="export")
            return
        if path is None:
            try:
                title = self.store.get_conversation(cid).title
            except ChatrnnError as e:
                self.notify(str(e), severity="error", title="export")
                return
            slug = re.sub(r"[^\w-]+", "-", title.lower(), flags=re.ASCII).strip("-")[:40] or "conversation"
            default = str(Path.cwd() / f"chatrnn-{cid}-{slug}.md")
            self.push_screen(
                PromptScreen("Export to Markdown file", default),
                lambda value: value and self.export_conversation(cid, value),
            )
            return
        try:
            written = self.store.export_to_file(cid, path)
        except ChatrnnError as e:
            self.notify(str(e), severity="error", title="export")
            return
        kept = "" if written == Path(path).expanduser() else f" ({path} already exists: left as it was)"
        self.notify(f"saved {written}{kept}", title="export", timeout=6)

    # ---- command palette ------------------------------------------------------------------
    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Chat tab", "Talk to the seq2seq model (F2)", lambda: self.action_tab("chat"))
        yield SystemCommand("Generate tab", "Sample from the char LM (F3)", lambda: self.action_tab("generate"))
        yield SystemCommand("New conversation", "Start afresh (ctrl+n)", self.action_new_conversation)
        yield SystemCommand(
            "Conversations", "Open, rename, delete, export stored conversations (ctrl+l)", self.action_conversations
        )
        yield SystemCommand("Export conversation", "Save this conversation as Markdown (ctrl+s)", self.action_export)
        yield SystemCommand(
            "Pick a model", "Every checkpoint found, with size and best val loss (ctrl+o)", self.action_pick_model
        )
        yield SystemCommand(
            "Runs", "Every checkpoint's loss curve, best val loss, size, corpus and time (F4)", self.action_runs
        )
        yield SystemCommand(
            "Toggle attention view",
            "Heatmap of the last reply's attention (ctrl+t in Chat)",
            lambda: (self.action_tab("chat"), self.chat.action_toggle_attention()),
        )
        yield SystemCommand(
            "Toggle candidates view",
            "Top candidates per generated character (ctrl+t in Generate)",
            lambda: (self.action_tab("generate"), self.gen.action_toggle_candidates()),
        )
        yield SystemCommand(
            "Stop",
            "Stop the reply or generation in progress (Esc)",
            lambda: (self.chat.action_stop(), self.gen.action_stop()),
        )
        yield SystemCommand("Regenerate", "Generate again from the same seed (ctrl+r)", self.gen.action_regenerate)
        yield SystemCommand(
            "Retry reply",
            "Another reply to the last chat message; the old one is kept (ctrl+r in Chat)",
            lambda: (self.action_tab("chat"), self.chat.action_regenerate()),
        )
        yield SystemCommand(
            "Search conversations", "Find a message in every stored conversation (ctrl+f)", self.chat.action_search
        )
        yield SystemCommand(
            "Copy conversation", "The chat conversation to the clipboard", self.chat.action_copy_conversation
        )
        yield SystemCommand(
            "Temperatures side by side",
            "One seed, 2 to 4 temperatures streamed in columns (ctrl+b in Generate)",
            lambda: (self.action_tab("generate"), self.gen.action_toggle_temperatures()),
        )
        yield SystemCommand(
            "Neurons view",
            "The generated text coloured by one unit, its gates at the cursor (ctrl+g in Generate)",
            lambda: (self.action_tab("generate"), self.gen.action_toggle_neurons()),
        )
        yield SystemCommand(
            "Adapt to a file",
            "Let the char model learn a text file, then generate in its style (F6 in Generate)",
            self.action_adapt_file,
        )
        yield SystemCommand(
            "Chat settings", "Show the decoding settings of this conversation", lambda: self.chat.command("/settings")
        )
        yield SystemCommand("Help", "Keys, commands and what the views show (F1)", self.action_help)
