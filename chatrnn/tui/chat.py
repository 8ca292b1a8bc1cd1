"""The Chat tab: a conversation with the seq2seq model, streamed from a thread worker.

Enter sends; the reply streams token by token (the worker, pipe and throttled drawing are
:class:`~chatrnn.tui.streaming.StreamingPane`'s, so the UI draws at its own pace and never blocks
on the model); Esc sets the cancel event the model checks between tokens. Every bot reply keeps
its attention weights; ``a`` on a focused reply (or ctrl+t for the latest) shows the heatmap.

Lines starting with ``/`` are commands (``/help`` lists them); ``//text`` sends ``/text``.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Generator
from dataclasses import dataclass, field, fields, replace
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Input, Static

from chatrnn.decoding import ReplySettings, set_value, to_dict
from chatrnn.errors import ChatrnnError
from chatrnn.tui.loading import CHAT, model_folder, train_hint
from chatrnn.tui.messages import (
    ConversationsChanged,
    ExportConversation,
    LoadModel,
    NewConversation,
    Notice,
    PickModel,
    ShowConversations,
)
from chatrnn.tui.streaming import StreamingPane, StreamJob
from chatrnn.tui.widgets import MessageView, transcript_text

#: Messages kept as live bubbles (with their attention view). Every widget in the conversation
#: costs time at each layout pass (each message sent, each keystroke that resizes the input), so
#: when there are more than FOLD_AT, all but the last KEEP_VIEWS fold into one block of text above.
KEEP_VIEWS = 30
FOLD_AT = 50
#: Folded messages shown in that block (all of them stay in the store; ctrl+s exports them).
FOLD_SHOWN = 300
#: Attention weights are stored rounded: enough for a heatmap, a fraction of the size.
ATTN_DIGITS = 3

SLASH_HELP = """\
/help                 this list (F1: all keys)
/temp 0.7             temperature (0 = greedy)       /topk 40   /topp 0.9
/beam 4               beam size (1 = sampling/greedy) /maxlen 60 /minlen 1
/nbest 1  /ngram 3  /lp 0.6  /context 2  /seed 42     other decoding settings
/settings             show the current settings       /reset     back to the defaults
/new                  start a new conversation        /history   stored conversations (ctrl+l)
/rename TITLE         rename this conversation        /export [PATH]  save it as Markdown
/attention            show/hide the heatmap of the last reply (ctrl+t)
/model NAME           load another chat checkpoint    /models    the model picker (ctrl+o)
//text                send a message starting with /"""

#: Short names for the decoding settings (``/temp 0.7``): the one table the TUI uses; anything
#: not here must be a field of :class:`~chatrnn.decoding.ReplySettings` itself.
SETTING_ALIASES = {
    "temp": "temperature",
    "t": "temperature",
    "k": "top_k",
    "topk": "top_k",
    "p": "top_p",
    "topp": "top_p",
    "beams": "beam",
    "len": "max_len",
    "maxlen": "max_len",
    "max": "max_len",
    "minlen": "min_len",
    "ngram": "no_repeat_ngram",
    "context": "context_turns",
    "ctx": "context_turns",
    "seed": "rng_seed",
    "lp": "length_penalty",
    "penalty": "length_penalty",
}


def setting_field(name: str) -> str:
    """The :class:`ReplySettings` field a typed setting name means (``/maxlen`` -> ``max_len``)."""
    key = name.lower().replace("-", "_")
    return SETTING_ALIASES.get(key, key)


@dataclass(kw_only=True)
class ReplyJob(StreamJob):
    message: str
    history: list[str]
    settings: ReplySettings
    view: MessageView
    conversation_id: int | None
    user_saved: bool = False  # the thread stored the user's message
    prompt_pieces: list[str] = field(default_factory=list)
    pieces: list[str] = field(default_factory=list)
    attention: list[list[float]] = field(default_factory=list)
    first_token_at: float | None = None


def _shown(tokens: list[Any]) -> tuple[list[str], list[list[float]]]:
    """The pieces of ``tokens`` that carry attention (the heatmap's rows), weights rounded."""
    shown = [t for t in tokens if t.piece or t.attention]
    return [t.piece for t in shown], [[round(float(a), ATTN_DIGITS) for a in (t.attention or [])] for t in shown]


class ChatPane(StreamingPane):
    KIND = CHAT
    MODEL_NOUN = "chat model"
    STATUS_ID = "chat-status"

    BINDINGS = [
        Binding("escape", "stop", "Stop reply"),
        Binding("ctrl+t", "toggle_attention", "Attention"),
    ]

    def __init__(self, settings: ReplySettings | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.default_settings = settings or ReplySettings()
        self.settings = replace(self.default_settings)
        self.turns: list[tuple[str, str]] = []  # (role, text) of this conversation, for context
        self._folded: list[tuple[str, str]] = []  # older turns shown as one block of text
        self.job: ReplyJob | None = None
        #: perf_counter times at which the first token of each reply was on screen (benchmarks)
        self.first_token_times: list[float] = []

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="messages"):
            yield Static("", id="chat-earlier")
            yield Static("", id="chat-empty")
        yield Static("", id="chat-status")
        yield Input(placeholder="Message (Enter sends · /help for commands · Esc stops a reply)", id="chat-input")

    def on_mount(self) -> None:
        self.query_one("#chat-earlier").display = False
        self.set_status("")

    # ---- model ---------------------------------------------------------------------------
    def set_loading(self, name: str) -> None:
        super().set_loading(name)
        self._empty(f"Loading {name or 'the chat model'}…")
        self.set_status("loading…")

    def set_model(self, model: Any, name: str = "") -> None:
        super().set_model(model, name)
        self._empty("" if self.turns else "Say something to the model. /help lists the commands, F1 the keys.")
        self.set_status("ready")

    def set_no_model(self, message: str | None = None) -> None:
        super().set_no_model(message)
        if self.model is None:
            self._empty(message or train_hint(CHAT))
            self.set_status("no chat model loaded")

    def _empty(self, text: str) -> None:
        w = self.query_one("#chat-empty", Static)
        w.update(text)
        w.display = bool(text)

    # ---- conversation --------------------------------------------------------------------
    def _show_earlier(self) -> None:
        w = self.query_one("#chat-earlier", Static)
        shown = self._folded[-FOLD_SHOWN:]
        w.update(transcript_text(shown, len(self._folded) - len(shown)))
        w.display = bool(self._folded)

    def clear(self) -> None:
        self.action_stop()
        self.job = None
        self.conversation_id = None
        self.turns = []
        self._folded = []
        self._show_earlier()
        for v in list(self.query(MessageView)):
            v.remove()  # (its attention view goes with it)

    def new_conversation(self) -> None:
        self.clear()
        self.settings = replace(self.default_settings)
        self._empty(
            "New conversation. Say something."
            if self.model
            else (train_hint(CHAT) if not self.model_loading else "Loading the chat model…")
        )
        self.set_status("")

    def load_conversation(self, conversation: Any, messages: list[Any]) -> None:
        """Show a stored conversation and continue it (its settings come back too)."""
        self.clear()
        self.conversation_id = conversation.id
        stored = (conversation.settings or {}).get("reply")
        self.settings = replace(self.default_settings)
        if isinstance(stored, dict):
            for k, v in stored.items():
                try:
                    self.settings = set_value(self.settings, k, v if v is not None else "none")
                except ChatrnnError:
                    pass  # a setting this version does not know, or out of range: keep the default
        box = self.query_one("#messages", VerticalScroll)
        self.turns = [(m.role, m.text) for m in messages]
        live = messages[-KEEP_VIEWS:]
        self._folded = [(m.role, m.text) for m in messages[: len(messages) - len(live)]]
        self._show_earlier()
        views = [MessageView(m.role, m.text, meta=m.meta, message_id=m.id) for m in live]
        if views:
            box.mount_all(views)
        self._empty("" if views else "Say something.")
        box.call_after_refresh(box.scroll_end, animate=False)
        self.set_status("")

    # ---- sending -------------------------------------------------------------------------
    @on(Input.Submitted, "#chat-input")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        text = event.value
        event.input.value = ""
        self.submit(text)

    def submit(self, text: str) -> bool:
        """Send ``text`` (or run it as a /command). Returns True when a reply was started."""
        if not text.strip():
            return False
        if text.startswith("/") and not text.startswith("//"):
            self.command(text)
            return False
        if text.startswith("//"):
            text = text[1:]
        return self.send(text)

    def send(self, text: str) -> bool:
        if not self.has_model("chat"):
            return False
        if self.running:
            self.notify("a reply is still streaming; Esc stops it", severity="warning", title="chat")
            return False
        bot = MessageView("bot", pending=True)
        job = ReplyJob(
            message=text,
            history=model_history(self.turns),
            settings=replace(self.settings),
            model=self.model,
            view=bot,
            conversation_id=self.conversation_id,
        )
        self.start_job(job)
        self._empty("")
        self.query_one("#messages", VerticalScroll).mount_all([MessageView("user", text), bot])
        self.turns.append(("user", text))
        views = list(self.query(MessageView))
        if len(views) > FOLD_AT:
            fold = views[: len(views) - KEEP_VIEWS]
            self._folded += [(v.role, v.text.strip()) for v in fold]
            for old in fold:
                old.remove()
            self._show_earlier()
        self.set_status("replying…  (Esc stops)")
        self._scroll_end()
        return True

    def produce(self, job: ReplyJob) -> Generator[Any, None, None]:
        """The reply's tokens. The user's message is stored right after the first token is on its
        way (not before: a disk write would delay the first token), or at the end if the model
        fails first (see :meth:`stored`)."""
        for tok in job.model.stream(job.message, job.history, job.settings, cancel=job.cancel):
            yield tok
            if not job.user_saved:
                self._save_user(job)
                try:  # the heatmap's columns
                    job.prompt_pieces = list(job.model.prompt_pieces(job.message, job.history, job.settings))
                except Exception:  # a model without pieces still chats; the heatmap just has no labels
                    job.prompt_pieces = []

    def stored(self, job: ReplyJob) -> None:
        """Store the turn (the store is thread-safe): the user's message if not yet, then the
        reply with its settings, pieces and attention, and how it ended."""
        if not job.user_saved:
            self._save_user(job)
        pieces, rows = _shown(job.produced)
        meta: dict[str, Any] = {
            "settings": to_dict(job.settings),
            "pieces": pieces,
            "prompt_pieces": job.prompt_pieces,
            "attention": rows,
        }
        if job.cancelled:
            meta["cancelled"] = True
        if job.error:
            meta["error"] = job.error
        self._save(job, "bot", job.produced_text().strip(), meta)
        self.post_message(ConversationsChanged())

    def _ensure_conversation(self, job: ReplyJob) -> None:
        """In the reply thread: the first message of a new conversation creates it in the store
        (a disk write, kept off the UI thread and out of the way of the first token)."""
        if job.conversation_id is not None or self.store is None:
            return
        try:
            conv = self.store.create_conversation(
                mode="chat", checkpoint=model_folder(job.model), settings={"reply": to_dict(job.settings)}
            )
        except ChatrnnError as e:
            self.post_message(Notice(str(e), "error", "history"))
            return
        job.conversation_id = conv.id
        if self.job is job and self.conversation_id is None:  # not if the user moved on meanwhile
            self.conversation_id = conv.id

    def _save_user(self, job: ReplyJob) -> None:
        job.user_saved = True
        self._ensure_conversation(job)
        self._save(job, "user", job.message, None)

    def _save(self, job: ReplyJob, role: str, text: str, meta: dict[str, Any] | None) -> None:
        """Called in the worker thread; failures become a notification, never an exception."""
        if self.store is None or job.conversation_id is None:
            return
        try:
            self.store.add_message(job.conversation_id, role, text, meta)
        except ChatrnnError as e:
            self.post_message(Notice(str(e), "error", "history"))

    def draw(self, job: ReplyJob, items: list[Any]) -> None:
        pieces, rows = _shown(items)
        job.pieces += pieces
        job.attention += rows
        if job.prompt_pieces and not job.view.prompt_pieces:
            job.view.prompt_pieces = job.prompt_pieces
        job.view.add("".join(t.text for t in items), pieces, rows)
        if job.first_token_at is None:
            job.first_token_at = -1.0

            def mark(job: ReplyJob = job) -> None:
                job.first_token_at = time.perf_counter()
                self.first_token_times.append(job.first_token_at)

            self.call_after_refresh(mark)
        self._scroll_end()

    def finish(self, job: ReplyJob) -> None:
        note = ""
        if job.error:
            note = f"error: {job.error}"
            self.notify(job.error, severity="error", title="reply")
        elif not job.text.strip() and not job.cancelled:
            note = "(the model produced an empty reply)"
        job.view.finish(cancelled=job.cancelled, note=note, prompt_pieces=job.prompt_pieces)
        if job is self.job:
            self.turns.append(("bot", job.text.strip()))
            took = time.perf_counter() - job.started
            self.set_status("stopped" if job.cancelled else "failed" if job.error else f"replied in {took:.2f}s")
        self._scroll_end()

    def action_toggle_attention(self) -> None:
        focused = self.screen.focused
        target = focused if isinstance(focused, MessageView) and focused.role == "bot" else None
        if target is None:
            bots = [v for v in self.query(MessageView) if v.role == "bot"]
            target = bots[-1] if bots else None
        if target is None:
            self.notify("no reply yet: the heatmap belongs to a bot reply", title="attention")
            return
        target.action_toggle_attention()
        if target.attention_shown:
            self.query_one("#messages", VerticalScroll).scroll_to_widget(target, animate=False)

    def _scroll_end(self) -> None:
        box = self.query_one("#messages", VerticalScroll)
        if box.is_vertical_scroll_end or box.max_scroll_y == 0 or self.running:
            box.call_after_refresh(box.scroll_end, animate=False)

    # ---- slash commands ------------------------------------------------------------------
    def command(self, line: str) -> None:
        try:
            self._command(line)
        except ChatrnnError as e:
            self.notify(str(e), severity="warning", title=line.split()[0])

    def _command(self, line: str) -> None:
        body = line[1:].strip()
        name, _, arg = body.partition(" ")
        name, arg = name.lower(), arg.strip()
        if name in ("help", "h", "?"):
            self.notify(SLASH_HELP, title="commands", timeout=20)
        elif name in ("new", "clear"):
            self.post_message(NewConversation())
        elif name in ("history", "list", "open", "conversations"):
            self.post_message(ShowConversations())
        elif name in ("models", "picker"):
            self.post_message(PickModel())
        elif name == "model":
            if not arg:
                raise ChatrnnError(f"usage: /model NAME (loaded: {self.model_name or 'none'})")
            self.post_message(LoadModel(CHAT, arg))
        elif name == "rename":
            if not arg:
                raise ChatrnnError("usage: /rename NEW TITLE")
            if self.conversation_id is None or self.store is None:
                raise ChatrnnError("nothing to rename yet: send a message first")
            self.store.rename(self.conversation_id, arg)
            self.post_message(ConversationsChanged())
            self.notify(f"renamed to {arg!r}", title="history")
        elif name == "export":
            self.post_message(ExportConversation(self.conversation_id, _one_arg(arg) if arg else None))
        elif name in ("attention", "attn"):
            self.action_toggle_attention()
        elif name in ("settings", "set") and not arg:
            self.notify(settings_text(self.settings), title="decoding settings", timeout=10)
        elif name == "reset":
            self.set_settings(replace(self.default_settings))
            self.notify(settings_text(self.settings), title="settings reset")
        else:
            if name in ("set", "settings"):
                name, _, arg = arg.partition(" ")
                arg = arg.strip()
            key = setting_field(name)
            known = {f.name for f in fields(ReplySettings)}
            if not arg:
                now = getattr(self.settings, key) if key in known else "?"
                raise ChatrnnError(f"usage: /{name} VALUE (now {now}); /help lists the commands")
            self.set_settings(set_value(self.settings, key, arg))
            self.notify(f"{key} = {getattr(self.settings, key)}", title="setting")

    def set_settings(self, settings: ReplySettings) -> None:
        """New decoding settings for this conversation (stored with it)."""
        self.settings = settings
        if self.conversation_id is not None and self.store is not None:
            try:
                self.store.update_settings(self.conversation_id, {"reply": to_dict(settings)})
            except ChatrnnError as e:
                self.notify(str(e), severity="error", title="history")
        self.set_status("")

    def status_line(self) -> str:
        s = self.settings
        decode = f"beam {s.beam}" if s.beam > 1 else ("greedy" if s.temperature == 0 else f"temp {s.temperature:g}")
        if s.beam == 1 and s.temperature > 0:
            if s.top_k:
                decode += f" · top-k {s.top_k}"
            if s.top_p < 1:
                decode += f" · top-p {s.top_p:g}"
        ctx = (
            s.context_turns
            if s.context_turns is not None
            else (self.model.context_turns if self.model is not None else "-")
        )
        return f"{self.model_name or 'no model'}  ·  {decode}  ·  max {s.max_len}  ·  context {ctx}  ·  {self.activity}"


def history_pairs(turns: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """``(role, text)`` turns -> ``(user, bot)`` pairs.

    Cancelled or empty bot turns still close a pair (as an empty reply) so that turns stay aligned.
    """
    pairs: list[tuple[str, str]] = []
    pending: str | None = None
    for role, text in turns:
        if role == "user":
            if pending is not None:
                pairs.append((pending, ""))
            pending = text
        elif pending is not None:
            pairs.append((pending, text))
            pending = None
    return pairs


def model_history(turns: list[tuple[str, str]]) -> list[str]:
    """The conversation so far as the chat model's ``history`` argument: the turns' texts,
    alternating user and bot (a user turn left without a reply gets an empty one, so the model
    always sees the turns in the order it was trained on); the model keeps the last few."""
    out: list[str] = []
    for user, bot in history_pairs(turns):
        out += [user, bot]
    return out


def _one_arg(arg: str) -> str:
    try:
        parts = shlex.split(arg)
    except ValueError:
        return arg
    return parts[0] if len(parts) == 1 else arg


def settings_text(s: ReplySettings) -> str:
    return "\n".join(f"{k} = {v}" for k, v in to_dict(s).items())
