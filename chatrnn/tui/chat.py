"""The Chat tab: a conversation with the seq2seq model, streamed from a thread worker.

Enter sends; the reply streams token by token (the worker pushes tokens through a coalescing
:class:`~chatrnn.tui.models.Pipe`, so the UI draws at its own pace and never blocks on the model);
Esc sets the cancel event the model checks between tokens. Every bot reply keeps its attention
weights; ``a`` on a focused reply (or ctrl+t for the latest) shows the heatmap.

Lines starting with ``/`` are commands (``/help`` lists them); ``//text`` sends ``/text``.
"""

from __future__ import annotations

import contextvars
import shlex
import threading
import time
from dataclasses import dataclass, field, replace

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Input, Static

from chatrnn.decoding import ReplySettings, set_value, to_dict
from chatrnn.errors import ChatrnnError
from chatrnn.tui.models import Pipe, missing_message, model_history, model_label, train_hint
from chatrnn.tui.widgets import JobMessage, MessageView, Notice, transcript_text

#: Most redraws of a streaming reply per second (the first token is drawn at once).
FPS = 30
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

ALIASES = {
    "maxlen": "max_len",
    "max": "max_len",
    "minlen": "min_len",
    "context": "context_turns",
    "ctx": "context_turns",
    "seed": "rng_seed",
    "lp": "length_penalty",
    "penalty": "length_penalty",
    "beams": "beam",
    "temperature": "temperature",
}


@dataclass
class ReplyJob:
    message: str
    history: list[tuple[str, str]]
    settings: ReplySettings
    model: object
    view: MessageView
    conversation_id: int | None
    cancel: threading.Event = field(default_factory=threading.Event)
    pipe: Pipe | None = None
    done: bool = False
    error: str | None = None
    prompt_pieces: list[str] = field(default_factory=list)
    text: str = ""
    pieces: list[str] = field(default_factory=list)
    attention: list[list[float]] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    first_token_at: float | None = None
    reported: bool = False


class ChatPane(Vertical):
    BINDINGS = [
        Binding("escape", "stop", "Stop reply"),
        Binding("ctrl+t", "toggle_attention", "Attention"),
    ]

    class Drain(JobMessage):
        """New reply tokens are waiting in ``job``."""

    class Replied(JobMessage):
        """A reply finished (done, stopped or failed)."""

    def __init__(self, settings: ReplySettings | None = None, **kw) -> None:
        super().__init__(**kw)
        self.default_settings = settings or ReplySettings()
        self.settings = replace(self.default_settings)
        self.model = None
        self.model_name = ""
        self.model_loading = False
        self.conversation_id: int | None = None
        self.turns: list[tuple[str, str]] = []  # (role, text) of this conversation, for context
        self._folded: list[tuple[str, str]] = []  # older turns shown as one block of text
        self.job: ReplyJob | None = None
        #: perf_counter times at which the first token of each reply was on screen (benchmarks)
        self.first_token_times: list[float] = []
        self._last_draw = 0.0
        self._draw_scheduled = False

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="messages"):
            yield Static("", id="chat-earlier")
            yield Static("", id="chat-empty")
        yield Static("", id="chat-status")
        yield Input(placeholder="Message (Enter sends · /help for commands · Esc stops a reply)", id="chat-input")

    def on_mount(self) -> None:
        self.query_one("#chat-earlier").display = False
        self._status("")

    def on_unmount(self) -> None:
        if self.job is not None:
            self.job.cancel.set()  # the app is closing: let the model thread finish

    @property
    def store(self):
        return getattr(self.app, "store", None)

    # ---- model ---------------------------------------------------------------------------
    def set_loading(self, name: str) -> None:
        self.model_loading = True
        self._empty(f"Loading {name or 'the chat model'}…")
        self._status("loading…")

    def set_model(self, model, name: str = "") -> None:
        self.model_loading = False
        self.model = model
        self.model_name = name or model_label(model)
        self._empty("" if self.turns else "Say something to the model. /help lists the commands, F1 the keys.")
        self._status("ready")

    def set_no_model(self, message: str | None = None) -> None:
        self.model_loading = False
        if self.model is None:
            self._empty(message or train_hint("chat"))
            self._status("no chat model loaded")

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
            else (train_hint("chat") if not self.model_loading else "Loading the chat model…")
        )
        self._status("")

    def load_conversation(self, conversation, messages) -> None:
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
        self._status("")

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
        if self.model is None:
            self.app.notify(
                "the chat model is still loading…" if self.model_loading else missing_message("chat"),
                severity="warning",
                title="chat",
            )
            return False
        if self.job is not None and not self.job.done:
            self.app.notify("a reply is still streaming; Esc stops it", severity="warning", title="chat")
            return False
        history = model_history(self.turns)
        bot = MessageView("bot", pending=True)
        job = ReplyJob(
            message=text,
            history=history,
            settings=replace(self.settings),
            model=self.model,
            view=bot,
            conversation_id=self.conversation_id,
        )
        job.pipe = Pipe(lambda: self.post_message(self.Drain(job)))
        self.job = job
        # The model starts before the UI does its own work (mounting, layout), on a plain thread
        # started right here: a Textual worker would only start once the event loop comes round.
        # (in a copy of this context, as Textual's workers do, so the thread may post messages)
        context = contextvars.copy_context()
        threading.Thread(target=context.run, args=(self._reply, job), name="chatrnn-reply", daemon=True).start()
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
        self._status("replying…  (Esc stops)")
        self._scroll_end()
        return True

    def _ensure_conversation(self, job: ReplyJob) -> None:
        """In the reply thread: the first message of a new conversation creates it in the store
        (a disk write, kept off the UI thread and out of the way of the first token)."""
        if job.conversation_id is not None or self.store is None:
            return
        try:
            conv = self.store.create_conversation(
                mode="chat", checkpoint=_folder(job.model), settings={"reply": to_dict(job.settings)}
            )
        except ChatrnnError as e:
            self.post_message(Notice(str(e), "error", "history"))
            return
        job.conversation_id = conv.id
        if self.job is job and self.conversation_id is None:  # not if the user moved on meanwhile
            self.conversation_id = conv.id

    def _reply(self, job: ReplyJob) -> None:
        """The worker thread: stream the reply, then save the turn (the store is thread-safe).

        The user's message is written right after the first token is on its way (not before: a
        disk write would delay the first token), or at the end if the model fails first.
        """
        model = job.model
        text: list[str] = []
        pieces: list[str] = []
        rows: list[list[float]] = []
        user_saved = False
        try:
            for tok in model.stream(job.message, job.history, job.settings, cancel=job.cancel):
                job.pipe.put(tok)
                text.append(tok.text)
                if tok.piece or tok.attention:
                    pieces.append(tok.piece)
                    rows.append([round(float(a), ATTN_DIGITS) for a in (tok.attention or [])])
                if not user_saved:
                    user_saved = True
                    self._save_user(job)
                    try:  # the heatmap's columns
                        job.prompt_pieces = list(model.prompt_pieces(job.message, job.history, job.settings))
                    except Exception:
                        job.prompt_pieces = []
                if job.cancel.is_set():
                    break
        except ChatrnnError as e:
            job.error = str(e)
        except Exception as e:  # a bug or a broken model: report it, keep the app alive
            job.error = f"{e.__class__.__name__}: {e}"
        finally:
            if not user_saved:
                self._save_user(job)
            cancelled = job.cancel.is_set() and job.error is None
            meta = {
                "settings": to_dict(job.settings),
                "pieces": pieces,
                "prompt_pieces": job.prompt_pieces,
                "attention": rows,
            }
            if cancelled:
                meta["cancelled"] = True
            if job.error:
                meta["error"] = job.error
            self._save(job, "bot", "".join(text).strip(), meta)
            job.done = True
            self.post_message(self.Drain(job))
            self.post_message(ConversationsChanged())

    def _save_user(self, job: ReplyJob) -> None:
        self._ensure_conversation(job)
        self._save(job, "user", job.message, None)

    def _save(self, job: ReplyJob, role: str, text: str, meta: dict | None) -> None:
        """Called in the worker thread; failures become a notification, never an exception."""
        if self.store is None or job.conversation_id is None:
            return
        try:
            self.store.add_message(job.conversation_id, role, text, meta)
        except ChatrnnError as e:
            self.post_message(Notice(str(e), "error", "history"))

    def on_chat_pane_drain(self, event: Drain) -> None:
        """Draw the tokens that arrived: the first at once, then at most :data:`FPS` redraws a
        second (tokens wait in the pipe meanwhile), so a fast model never crowds out key presses."""
        job = event.job
        wait = self._last_draw + 1 / FPS - time.perf_counter()
        if wait > 0 and not job.done and job.first_token_at is not None:
            if not self._draw_scheduled:
                self._draw_scheduled = True
                self.set_timer(wait, lambda: self._deferred_draw(job))
            return
        self._last_draw = time.perf_counter()
        items = job.pipe.take()
        if items:
            text = "".join(t.text for t in items)
            shown = [t for t in items if t.piece or t.attention]
            pieces = [t.piece for t in shown]
            rows = [[round(float(a), ATTN_DIGITS) for a in (t.attention or [])] for t in shown]
            job.text += text
            job.pieces += pieces
            job.attention += rows
            if job.prompt_pieces and not job.view.prompt_pieces:
                job.view.prompt_pieces = job.prompt_pieces
            job.view.add(text, pieces, rows)
            if job.first_token_at is None:
                job.first_token_at = -1.0

                def mark(job=job) -> None:
                    job.first_token_at = time.perf_counter()
                    self.first_token_times.append(job.first_token_at)

                self.call_after_refresh(mark)
            self._scroll_end()
        if job.done and not job.reported:
            job.reported = True
            self._finish(job)

    def _deferred_draw(self, job: ReplyJob) -> None:
        self._draw_scheduled = False
        self.on_chat_pane_drain(self.Drain(job))

    def _finish(self, job: ReplyJob) -> None:
        cancelled = job.cancel.is_set() and job.error is None
        note = ""
        if job.error:
            note = f"error: {job.error}"
            self.app.notify(job.error, severity="error", title="reply")
        elif not job.text.strip() and not cancelled:
            note = "(the model produced an empty reply)"
        job.view.finish(cancelled=cancelled, note=note, prompt_pieces=job.prompt_pieces)
        if job is self.job:
            self.turns.append(("bot", job.text.strip()))
            took = time.perf_counter() - job.started
            self._status("stopped" if cancelled else "failed" if job.error else f"replied in {took:.2f}s")
        self._scroll_end()
        self.post_message(self.Replied(job))

    def action_stop(self) -> None:
        if self.job is not None and not self.job.done:
            self.job.cancel.set()
            self._status("stopping…")

    @property
    def replying(self) -> bool:
        return self.job is not None and not self.job.done

    def action_toggle_attention(self) -> None:
        focused = self.app.focused
        target = focused if isinstance(focused, MessageView) and focused.role == "bot" else None
        if target is None:
            bots = [v for v in self.query(MessageView) if v.role == "bot"]
            target = bots[-1] if bots else None
        if target is None:
            self.app.notify("no reply yet: the heatmap belongs to a bot reply", title="attention")
            return
        target.action_toggle_attention()
        if target.attention_shown:
            self.query_one("#messages", VerticalScroll).scroll_to_widget(target, animate=False)

    def _scroll_end(self) -> None:
        box = self.query_one("#messages", VerticalScroll)
        if box.is_vertical_scroll_end or box.max_scroll_y == 0 or self.replying:
            box.call_after_refresh(box.scroll_end, animate=False)

    # ---- slash commands ------------------------------------------------------------------
    def command(self, line: str) -> None:
        try:
            self._command(line)
        except ChatrnnError as e:
            self.app.notify(str(e), severity="warning", title=line.split()[0])

    def _command(self, line: str) -> None:
        body = line[1:].strip()
        name, _, arg = body.partition(" ")
        name, arg = name.lower(), arg.strip()
        app = self.app
        if name in ("help", "h", "?"):
            app.notify(SLASH_HELP, title="commands", timeout=20)
        elif name in ("new", "clear"):
            app.action_new_conversation()
        elif name in ("history", "list", "open", "conversations"):
            app.action_conversations()
        elif name in ("models", "picker"):
            app.action_pick_model()
        elif name == "model":
            if not arg:
                raise ChatrnnError(f"usage: /model NAME (loaded: {self.model_name or 'none'})")
            app.load_chat(arg)
        elif name == "rename":
            if not arg:
                raise ChatrnnError("usage: /rename NEW TITLE")
            if self.conversation_id is None:
                raise ChatrnnError("nothing to rename yet: send a message first")
            self.store.rename(self.conversation_id, arg)
            self.post_message(ConversationsChanged())
            app.notify(f"renamed to {arg!r}", title="history")
        elif name == "export":
            app.export_conversation(self.conversation_id, _one_arg(arg) if arg else None)
        elif name in ("attention", "attn"):
            self.action_toggle_attention()
        elif name in ("settings", "set") and not arg:
            app.notify(settings_text(self.settings), title="decoding settings", timeout=10)
        elif name == "reset":
            self.set_settings(replace(self.default_settings))
            app.notify(settings_text(self.settings), title="settings reset")
        else:
            if name in ("set", "settings"):
                name, _, arg = arg.partition(" ")
                arg = arg.strip()
            key = ALIASES.get(name, name)
            if not arg:
                raise ChatrnnError(
                    f"usage: /{name} VALUE (now {getattr(self.settings, _field(key), '?')}); /help lists the commands"
                )
            self.set_settings(set_value(self.settings, key, arg))
            field_name = _field(key)
            app.notify(f"{field_name} = {getattr(self.settings, field_name)}", title="setting")

    def set_settings(self, settings: ReplySettings) -> None:
        """New decoding settings for this conversation (stored with it)."""
        self.settings = settings
        if self.conversation_id is not None and self.store is not None:
            try:
                self.store.update_settings(self.conversation_id, {"reply": to_dict(settings)})
            except ChatrnnError as e:
                self.app.notify(str(e), severity="error", title="history")
        self._status("")

    def _status(self, state: str | None) -> None:
        if state is not None:
            self._state = state
        s = self.settings
        decode = f"beam {s.beam}" if s.beam > 1 else ("greedy" if s.temperature == 0 else f"temp {s.temperature:g}")
        if s.beam == 1 and s.temperature > 0:
            if s.top_k:
                decode += f" · top-k {s.top_k}"
            if s.top_p < 1:
                decode += f" · top-p {s.top_p:g}"
        ctx = s.context_turns if s.context_turns is not None else getattr(self.model, "context_turns", "-")
        self.query_one("#chat-status", Static).update(  # one line, fixed size: no layout pass
            f"{self.model_name or 'no model'}  ·  {decode}  ·  max "
            f"{s.max_len}  ·  context {ctx}  ·  {getattr(self, '_state', '')}",
            layout=False,
        )


def _field(key: str) -> str:
    aliases = {
        "temp": "temperature",
        "t": "temperature",
        "k": "top_k",
        "p": "top_p",
        "topk": "top_k",
        "topp": "top_p",
        "len": "max_len",
        "ngram": "no_repeat_ngram",
    }
    key = key.lower().replace("-", "_")
    return aliases.get(key, key)


def _one_arg(arg: str) -> str:
    try:
        parts = shlex.split(arg)
    except ValueError:
        return arg
    return parts[0] if len(parts) == 1 else arg


def settings_text(s: ReplySettings) -> str:
    return "\n".join(f"{k} = {v}" for k, v in to_dict(s).items())


def _folder(model) -> str | None:
    folder = getattr(model, "folder", None)
    return str(folder) if folder is not None else None


class ConversationsChanged(Message):
    """The stored conversations changed (the list screen refreshes)."""
