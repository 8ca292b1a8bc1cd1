"""The Chat tab: a conversation with the seq2seq model, streamed from a thread worker.

Enter sends (shift+enter or ctrl+j: a newline; the box is :class:`~chatrnn.tui.chat_input.ChatInput`);
the reply streams token by token (the worker, pipe and throttled drawing are
:class:`~chatrnn.tui.streaming.StreamingPane`'s, so the UI draws at its own pace and never blocks
on the model); Esc sets the cancel event the model checks between tokens. Every bot reply keeps
its attention weights; ``a`` on a focused reply (or ctrl+t for the latest) shows the heatmap.

A conversation is a tree in the store (``store.py``): ctrl+r (``/retry``) asks again for the last
reply, ``e`` (``/edit``) sends a changed version of a message; both add a sibling instead of
replacing anything, ``<``/``>`` on a message flips between siblings, and what is shown is always
the store's active branch. With beam search, ``/nbest N`` lists the N best replies under each one;
1-9 on it makes one of them the reply (a sibling too).

Lines starting with ``/`` are commands (``/help`` lists them); ``//text`` sends ``/text``.
"""

from __future__ import annotations

import inspect
import shlex
import time
from collections.abc import Generator
from dataclasses import dataclass, field, fields, replace
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Static

from chatrnn.decoding import ReplySettings, set_value, to_dict
from chatrnn.errors import ChatrnnError
from chatrnn.tui.chat_input import ChatInput
from chatrnn.tui.loading import CHAT, chat_states, model_folder, train_hint
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
from chatrnn.tui.streaming import StreamingPane, StreamJob
from chatrnn.tui.widgets import MessageView, nbest_list, transcript_text

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
/retry                another reply to the last message (ctrl+r); < > on a reply flips them
/edit [TEXT]          send a changed last message (e on a focused one): a new branch
/nbest 3              with beam search, the 3 best replies and scores; /pick N makes one the reply
/rerank mmi  /mmi 0.5 rerank the beam's replies by mutual information (/rerank none: off)
/copy [last]          the conversation (or the last reply) to the clipboard (c on a message)
/search [WORDS]       find a message in every stored conversation (ctrl+f)
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
    "mmi": "mmi_lambda",
    "lambda": "mmi_lambda",
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
    user_saved: bool = False  # the thread stored the user's message (or it is stored already)
    #: where the user's message goes in the tree: ``...`` after the active branch's end, else
    #: this parent (an edited message: its original's parent; None for a first message)
    user_parent: Any = ...
    user_id: int | None = None  # the stored user message (known already for a regenerate)
    user_view: MessageView | None = None
    bot_id: int | None = None
    branch: tuple[int, int] | None = None  # the stored reply's place among its siblings
    alternatives: list[Any] = field(default_factory=list)  # beam search's n best (infer_chat.Alternative)
    prompt_pieces: list[str] = field(default_factory=list)
    pieces: list[str] = field(default_factory=list)
    attention: list[list[float]] = field(default_factory=list)
    first_token_at: float | None = None
    states: dict | None = None  # hidden-state changes beside the heatmap (loading.chat_states)


def _shown(tokens: list[Any]) -> tuple[list[str], list[list[float]]]:
    """The pieces of ``tokens`` that carry attention (the heatmap's rows), weights rounded."""
    shown = [t for t in tokens if t.piece or t.attention]
    return [t.piece for t in shown], [[round(float(a), ATTN_DIGITS) for a in (t.attention or [])] for t in shown]


class ChatPane(StreamingPane):
    KIND = CHAT
    MODEL_NOUN = "chat model"
    STATUS_ID = "chat-status"
    DEFAULT_CSS = """
    ChatPane .message.editing {
        border-left: thick $error;
    }
    """

    BINDINGS = [
        Binding("escape", "stop", "Stop reply"),
        Binding("ctrl+t", "toggle_attention", "Attention"),
        Binding("ctrl+r", "regenerate", "Retry"),
        Binding("ctrl+f", "search", "Search"),
        # on a focused message (a text box consumes printable keys, so these never fire while typing)
        Binding("less_than_sign", "flip(-1)", "Prev alt", show=False),
        Binding("greater_than_sign", "flip(1)", "Next alt", show=False),
        Binding("e", "edit", "Edit", show=False),
        Binding("c", "copy_message", "Copy", show=False),
        Binding("C", "copy_conversation", "Copy all", show=False),
        *[Binding(str(n), f"pick({n})", show=False) for n in range(1, 10)],
    ]

    def __init__(self, settings: ReplySettings | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.default_settings = settings or ReplySettings()
        self.settings = replace(self.default_settings)
        self.turns: list[tuple[str, str]] = []  # (role, text) of this conversation, for context
        self._folded: list[tuple[str, str]] = []  # older turns shown as one block of text
        self.job: ReplyJob | None = None
        #: the stored user message being edited (``e`` / ``/edit``): the next send branches from it
        self.editing: MessageView | None = None
        #: perf_counter times at which the first token of each reply was on screen (benchmarks)
        self.first_token_times: list[float] = []

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="messages"):
            yield Static("", id="chat-earlier")
            yield Static("", id="chat-empty", markup=False)  # it quotes checkpoint names and errors
        yield Static("", id="chat-status")
        yield ChatInput(
            placeholder="Message (Enter sends · shift+enter/ctrl+j new line · /help · Esc stops a reply)",
            id="chat-input",
        )

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
        self._end_edit()
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
        """Show a stored conversation (its active branch) and continue it; its settings come back too."""
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
        self._show_path(messages)
        box = self.query_one("#chat-input", ChatInput)
        for m in messages:
            if m.role == "user":
                box.remember(m.text)
        self.set_status("")

    def _show_path(self, messages: list[Any], focus_id: int | None = None) -> None:
        """Draw ``messages`` (a branch from the store) as the conversation, replacing what is shown."""
        for v in list(self.query(MessageView)):
            v.remove()
        box = self.query_one("#messages", VerticalScroll)
        self.turns = [(m.role, m.text) for m in messages]
        live = messages[-KEEP_VIEWS:]
        self._folded = [(m.role, m.text) for m in messages[: len(messages) - len(live)]]
        self._show_earlier()
        branches = self._branches()
        views = []
        for m in live:
            view = MessageView(m.role, m.text, meta=m.meta, message_id=m.id)
            view.branch = branches.get(m.id)
            view.refresh_body()
            views.append(view)
        if views:
            box.mount_all(views)
        self._empty("" if views else "Say something.")
        focus = next((v for v in views if v.message_id == focus_id), None) if focus_id is not None else None
        if focus is not None:
            focus.focus()
            box.call_after_refresh(box.scroll_to_widget, focus, animate=False)
        else:
            box.call_after_refresh(box.scroll_end, animate=False)

    def _branches(self) -> dict[int, tuple[int, int]]:
        if self.conversation_id is None or self.store is None:
            return {}
        try:
            return self.store.branches(self.conversation_id)
        except ChatrnnError as e:
            self.notify(str(e), severity="error", title="history")
            return {}

    def focus_message(self, message_id: int) -> bool:
        """Focus (and scroll to) the shown message ``message_id``; False when it is not shown."""
        for v in self.query(MessageView):
            if v.message_id == message_id:
                v.focus()
                self.query_one("#messages", VerticalScroll).scroll_to_widget(v, animate=False)
                return True
        return False

    # ---- sending -------------------------------------------------------------------------
    @on(ChatInput.Submitted, "#chat-input")
    def _submitted(self, event: ChatInput.Submitted) -> None:
        event.stop()
        text = event.value
        if not text.strip():
            return
        box = event.input
        if text.startswith("/") and not text.startswith("//"):
            box.remember(text)
            box.value = ""  # first: a command may fill the box (/edit)
            self.submit(text)
        elif self.submit(text):  # a message that could not be sent stays in the box
            box.remember(text)
            box.value = ""

    def submit(self, text: str) -> bool:
        """Send ``text`` (or run it as a /command). Returns True when a reply was started."""
        if not text.strip():
            return False
        if text.startswith("/") and not text.startswith("//"):
            self.command(text)
            return False
        if text.startswith("//"):
            text = text[1:]
        if self.editing is not None:
            return self._send_edit(self.editing, text)
        return self.send(text)

    def _ready(self, title: str) -> bool:
        if not self.has_model(title):
            return False
        if self.running:
            self.notify("a reply is still streaming; Esc stops it", severity="warning", title=title)
            return False
        return True

    def send(self, text: str) -> bool:
        if not self._ready("chat"):
            return False
        user = MessageView("user", text)
        self._start(ReplyJob(**self._job_args(text, model_history(self.turns)), user_view=user), [user])
        self.turns.append(("user", text))
        return True

    def _job_args(self, message: str, history: list[str]) -> dict[str, Any]:
        return dict(
            message=message,
            history=history,
            settings=replace(self.settings),
            model=self.model,
            view=MessageView("bot", pending=True),
            conversation_id=self.conversation_id,
        )

    def _start(self, job: ReplyJob, before: list[MessageView]) -> None:
        """Run ``job`` and show its pending reply after ``before`` (the user's message, if new)."""
        self.start_job(job)
        self._empty("")
        self.query_one("#messages", VerticalScroll).mount_all([*before, job.view])
        views = list(self.query(MessageView))
        if len(views) > FOLD_AT:
            fold = views[: len(views) - KEEP_VIEWS]
            self._folded += [(v.role, v.text.strip()) for v in fold]
            for old in fold:
                old.remove()
            self._show_earlier()
        self.set_status("replying…  (Esc stops)")
        self._scroll_end()

    # ---- regenerate, edit, branches ------------------------------------------------------
    def _stored_ids(self, title: str) -> bool:
        """Tree operations need the conversation in the store, and the shown messages' ids."""
        if self.store is None or self.conversation_id is None:
            self.notify("nothing stored yet: send a message first", severity="warning", title=title)
            return False
        return True

    def action_regenerate(self) -> None:
        """Another reply to the last message, with the conversation's current settings; the old
        reply stays, as an alternative (``<``/``>``)."""
        if not self._ready("retry") or not self._stored_ids("retry"):
            return
        views = list(self.query(MessageView))
        users = [i for i, v in enumerate(views) if v.role == "user"]
        if not users or views[users[-1]].message_id is None:
            self.notify("no message to reply to again yet", severity="warning", title="retry")
            return
        user = views[users[-1]]
        k = max(i for i, (role, _) in enumerate(self.turns) if role == "user")
        for v in views[users[-1] + 1 :]:
            v.remove()
        self.turns = self.turns[: k + 1]
        job = ReplyJob(
            **self._job_args(user.text, model_history(self.turns[:k])),
            user_saved=True,
            user_id=user.message_id,
            user_view=user,
        )
        self._start(job, [])

    def action_edit(self) -> None:
        """Edit the focused message (on a reply: the message it answers), else the last one: its
        text goes to the box, and sending it starts a new branch from there."""
        focused = self.screen.focused
        target = focused if isinstance(focused, MessageView) and focused.role == "user" else None
        if isinstance(focused, MessageView) and focused.role == "bot":
            views = list(self.query(MessageView))
            above = [v for v in views[: views.index(focused)] if v.role == "user"] if focused in views else []
            target = above[-1] if above else None
        if target is None:
            users = [v for v in self.query(MessageView) if v.role == "user"]
            target = users[-1] if users else None
        if target is None or target.message_id is None:
            self.notify("no sent message to edit yet", severity="warning", title="edit")
            return
        self.editing = target
        target.add_class("editing")
        box = self.query_one("#chat-input", ChatInput)
        box.value = target.text
        box.focus()
        self.set_status("editing · Enter: new branch · Esc cancels")

    def _end_edit(self) -> None:
        if self.editing is not None:
            self.editing.remove_class("editing")
            self.editing = None

    def _send_edit(self, original: MessageView, text: str) -> bool:
        """Send ``text`` in place of ``original``: a sibling of it in the tree, whose reply follows."""
        if not self._ready("edit"):
            return False
        try:
            parent = self.store.get_message(self.conversation_id, original.message_id).parent_id
        except (ChatrnnError, AttributeError) as e:
            self.notify(str(e), severity="error", title="edit")
            self._end_edit()
            return False
        views = list(self.query(MessageView))
        if original not in views:
            self._end_edit()
            return self.send(text)
        at = views.index(original)
        # the turns before it: the folded ones and the live views above it
        shown_before = len(views[:at])
        self.turns = self.turns[: len(self._folded) + shown_before]
        for v in views[at:]:
            v.remove()
        self._end_edit()
        user = MessageView("user", text)
        job = ReplyJob(**self._job_args(text, model_history(self.turns)), user_view=user, user_parent=parent)
        self._start(job, [user])
        self.turns.append(("user", text))
        return True

    def action_flip(self, step: int) -> None:
        """The previous/next alternative of the focused message (replies: regenerated or picked;
        user messages: edited versions), and the branch below it."""
        view = self.screen.focused
        if not isinstance(view, MessageView) or view.message_id is None:
            return
        if view.branch is None:
            hint = "ctrl+r asks for another reply" if view.role == "bot" else "e edits it into another version"
            self.notify(f"this message has no alternatives ({hint})", title="alternatives", timeout=4)
            return
        if self.running:
            self.notify("a reply is still streaming; Esc stops it", severity="warning", title="alternatives")
            return
        try:
            sibs = self.store.siblings(self.conversation_id, view.message_id)
            ids = [m.id for m in sibs]
            at = ids.index(view.message_id) + step
            if not 0 <= at < len(ids):
                return
            path = self.store.set_active(self.conversation_id, ids[at])
        except (ChatrnnError, ValueError, AttributeError) as e:
            self.notify(str(e), severity="error", title="alternatives")
            return
        self._show_path(path, focus_id=ids[at])
        self.set_status("")

    def action_pick(self, n: int) -> None:
        """Make the ``n``-th of the focused reply's n-best list (else the last reply's) the reply."""
        focused = self.screen.focused
        view = focused if isinstance(focused, MessageView) and focused.role == "bot" else None
        if view is None:
            bots = [v for v in self.query(MessageView) if v.role == "bot"]
            view = bots[-1] if bots else None
        if view is None or len(view.nbest) < 2:
            self.notify("no n-best list here: /beam 4 and /nbest 3 make one", severity="warning", title="n-best")
            return
        if not 1 <= n <= len(view.nbest) or view.message_id is None or not self._stored_ids("n-best"):
            self.notify(f"pick 1 to {len(view.nbest)}", severity="warning", title="n-best")
            return
        if self.running:
            self.notify("a reply is still streaming; Esc stops it", severity="warning", title="n-best")
            return
        text, score, pieces, attention = view.nbest[n - 1]
        try:
            cid = self.conversation_id
            sibs = self.store.siblings(cid, view.message_id)
            same = next((m for m in sibs if m.text == text), None)
            if same is not None:
                path = self.store.set_active(cid, same.id)
                picked = same.id
            else:
                parent = self.store.get_message(cid, view.message_id).parent_id
                meta = {
                    "settings": to_dict(self.settings),
                    "pieces": pieces,
                    "prompt_pieces": view.prompt_pieces,
                    "attention": attention,
                    "nbest": view.nbest,
                    "picked": n,
                    "score": score,
                }
                picked = self.store.add_message(cid, "bot", text, meta, parent_id=parent).id
                path = self.store.messages(cid)
        except ChatrnnError as e:
            self.notify(str(e), severity="error", title="n-best")
            return
        self._show_path(path, focus_id=picked)
        self.post_message(ConversationsChanged())
        self.notify(f"reply {n} of {len(view.nbest)} (score {score:.3f}) is now the reply", title="n-best")

    # ---- copy and search -----------------------------------------------------------------
    def action_copy_message(self) -> None:
        self.copy_message(self.screen.focused)

    def copy_message(self, view: Any) -> None:
        """Copy ``view``'s text (exactly as stored), else the last reply's, to the clipboard."""
        if not isinstance(view, MessageView):
            bots = [v for v in self.query(MessageView) if v.role == "bot"]
            view = bots[-1] if bots else None
        if view is None:
            self.notify("nothing to copy yet", severity="warning", title="copy")
            return
        text = view.text.strip() if view.role == "bot" else view.text
        self.app.copy_to_clipboard(text)
        self.notify(f"copied {len(text):,} characters", title="copy", timeout=3)

    def action_copy_conversation(self) -> None:
        if not self.turns:
            self.notify("nothing to copy yet", severity="warning", title="copy")
            return
        text = conversation_text(self.turns)
        self.app.copy_to_clipboard(text)
        self.notify(f"copied the conversation ({len(self.turns)} messages)", title="copy", timeout=3)

    def action_search(self, query: str = "") -> None:
        if self.store is None:
            return
        from chatrnn.tui.search import SearchScreen

        def opened(hit: tuple[int, int] | None) -> None:
            if hit is not None:
                self.post_message(OpenConversation(*hit))

        self.app.push_screen(SearchScreen(self.store, query), opened)

    def action_stop(self) -> None:
        if not self.running and self.editing is not None:
            self._end_edit()
            self.query_one("#chat-input", ChatInput).value = ""
            self.set_status("edit cancelled")
            return
        super().action_stop()

    # ---- the reply thread ----------------------------------------------------------------
    def produce(self, job: ReplyJob) -> Generator[Any, None, None]:
        """The reply's tokens. The user's message is stored right after the first token is on its
        way (not before: a disk write would delay the first token), or at the end if the model
        fails first (see :meth:`stored`)."""
        wanted = job.settings.beam > 1 and job.settings.nbest > 1 and _takes_alternatives(job.model)
        kw = {"alternatives": job.alternatives} if wanted else {}
        first = True
        for tok in job.model.stream(job.message, job.history, job.settings, cancel=job.cancel, **kw):
            yield tok
            if first:
                first = False
                if not job.user_saved:
                    self._save_user(job)
                try:  # the heatmap's columns
                    job.prompt_pieces = list(job.model.prompt_pieces(job.message, job.history, job.settings))
                except Exception:  # a model without pieces still chats; the heatmap just has no labels
                    job.prompt_pieces = []

    def stored(self, job: ReplyJob) -> None:
        """Store the turn (the store is thread-safe): the user's message if not yet, then the
        reply (a child of it) with its settings, pieces, attention and n-best list, and how it ended."""
        if not job.user_saved:
            self._save_user(job)
        pieces, rows = _shown(job.produced)
        meta: dict[str, Any] = {
            "settings": to_dict(job.settings),
            "pieces": pieces,
            "prompt_pieces": job.prompt_pieces,
            "attention": rows,
        }
        job.states = chat_states(job.model, job.message, job.history, job.settings, job.produced)
        if job.states:  # the hidden-state heatmaps (a model without states has none)
            meta["states"] = job.states
        if len(job.alternatives) > 1:
            meta["nbest"] = [
                [
                    a.text,
                    round(float(a.score), 4),
                    list(a.pieces),
                    [[round(float(x), ATTN_DIGITS) for x in r] for r in a.attention],
                ]
                for a in job.alternatives
            ]
        if job.cancelled:
            meta["cancelled"] = True
        if job.error:
            meta["error"] = job.error
        parent = job.user_id if job.user_id is not None else ...
        saved = self._save(job, "bot", job.produced_text().strip(), meta, parent)
        if saved is not None:
            job.bot_id = saved.id
            try:
                sibs = self.store.siblings(job.conversation_id, saved.id)
                if len(sibs) > 1:
                    job.branch = (len(sibs), len(sibs))
            except ChatrnnError:
                pass
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
        saved = self._save(job, "user", job.message, None, job.user_parent)
        if saved is not None:
            job.user_id = saved.id

    def _save(self, job: ReplyJob, role: str, text: str, meta: dict[str, Any] | None, parent: Any = ...) -> Any:
        """Called in the worker thread; failures become a notification, never an exception."""
        if self.store is None or job.conversation_id is None:
            return None
        try:
            return self.store.add_message(job.conversation_id, role, text, meta, parent_id=parent)
        except ChatrnnError as e:
            self.post_message(Notice(str(e), "error", "history"))
            return None

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
        job.view.message_id = job.bot_id
        job.view.branch = job.branch
        job.view.nbest = nbest_list(
            [[a.text, a.score, list(a.pieces), a.attention] for a in job.alternatives]
            if len(job.alternatives) > 1
            else []
        )
        if job.user_view is not None and job.user_id is not None:
            job.user_view.message_id = job.user_id
            if job.user_parent is not ...:  # an edit: the original is now one of its alternatives
                job.user_view.branch = self._branches().get(job.user_id)
                job.user_view.refresh_body()
        job.view.finish(cancelled=job.cancelled, note=note, prompt_pieces=job.prompt_pieces, states=job.states)
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
        elif name in ("retry", "regenerate", "again"):
            self.action_regenerate()
        elif name == "edit":
            if not arg:
                self.action_edit()
            else:
                users = [v for v in self.query(MessageView) if v.role == "user" and v.message_id is not None]
                if not users:
                    raise ChatrnnError("no sent message to edit yet")
                self._send_edit(users[-1], arg)
        elif name == "pick":
            try:
                n = int(arg)
            except ValueError:
                raise ChatrnnError("usage: /pick N (a number from the n-best list under the reply)") from None
            self.action_pick(n)
        elif name == "copy":
            if arg in ("last", "reply"):
                bots = [v for v in self.query(MessageView) if v.role == "bot"]
                if not bots:
                    raise ChatrnnError("no reply to copy yet")
                self.copy_message(bots[-1])
            elif arg:
                raise ChatrnnError("usage: /copy (the whole conversation) or /copy last (the last reply)")
            else:
                self.action_copy_conversation()
        elif name in ("search", "find"):
            self.action_search(arg)
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
            settings = set_value(self.settings, key, arg)
            note = ""
            if key == "nbest" and settings.nbest > settings.beam:  # the n best come from the beam
                settings = replace(settings, beam=settings.nbest)
                note = f" (beam raised to {settings.beam}: the n best come from beam search)"
            if key == "rerank" and settings.rerank != "none" and settings.beam < 2:  # it reranks the beam's
                settings = replace(settings, beam=4)
                note = " (beam raised to 4: reranking reorders beam search's candidates)"
            self.set_settings(settings)
            self.notify(f"{key} = {getattr(self.settings, key)}{note}", title="setting")

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


def _takes_alternatives(model: Any) -> bool:
    """Whether ``model.stream`` can hand out its n best (``alternatives=``): the Responder can; a
    model that cannot (an older or scripted one) still chats, without the list."""
    try:
        params = inspect.signature(model.stream).parameters
    except (TypeError, ValueError):
        return False
    return "alternatives" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def conversation_text(turns: list[tuple[str, str]]) -> str:
    """The conversation as plain text for the clipboard: ``You: ...`` / ``Bot: ...``, a blank line
    between turns, each text exactly as stored."""
    return "\n\n".join(f"{'You' if role == 'user' else 'Bot'}: {text}" for role, text in turns) + "\n"


def _one_arg(arg: str) -> str:
    try:
        parts = shlex.split(arg)
    except ValueError:
        return arg
    return parts[0] if len(parts) == 1 else arg


def settings_text(s: ReplySettings) -> str:
    return "\n".join(f"{k} = {v}" for k, v in to_dict(s).items())
