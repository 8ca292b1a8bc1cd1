"""Tokens from a model thread to the screen: the coalescing :class:`Pipe`, the :class:`StreamJob`
a pane runs, and :class:`StreamingPane`, the base of the Chat and Generate tabs.

Both tabs do the same thing with different models: start a job on a thread worker, let the worker
push tokens into a pipe, drain the pipe on the UI thread at a bounded frame rate, show how the job
ended, and keep a one-line status. That machinery lives here once; a pane supplies only what is
its own: how to run its model (:meth:`StreamingPane.produce`, in the thread), how to store the
result (:meth:`StreamingPane.stored`, in the thread), how to draw tokens
(:meth:`StreamingPane.draw`) and the end (:meth:`StreamingPane.finish`), and its status line.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import work
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Static

from chatrnn.errors import ChatrnnError
from chatrnn.tui.loading import missing_message, model_label
from chatrnn.tui.widgets import clean_text

if TYPE_CHECKING:
    from chatrnn.tui.store import Store

log = logging.getLogger(__name__)


class Pipe:
    """Tokens from a worker thread to the UI, coalesced.

    The worker calls :meth:`put` for every token; ``wake`` (which posts a message to the UI) runs
    only when the pipe goes from empty to non-empty, so a fast model never floods the message
    queue: the UI takes everything that piled up in one :meth:`take` and draws once.
    """

    def __init__(self, wake: Callable[[], None]) -> None:
        self._items: list[Any] = []
        self._lock = threading.Lock()
        self._wake = wake

    def put(self, item: Any) -> None:
        with self._lock:
            first = not self._items
            self._items.append(item)
        if first:
            self._wake()

    def take(self) -> list[Any]:
        with self._lock:
            items, self._items = self._items, []
        return items


@dataclass(kw_only=True)
class StreamJob:
    """One run of a model (a reply, a generation). The worker thread owns ``produced``, ``error``
    and ``done``; the UI thread owns ``text``, ``count``, ``drawn`` and ``reported`` (what it has
    drawn so far), so neither side waits for the other."""

    model: Any
    settings: Any
    cancel: threading.Event = field(default_factory=threading.Event)
    pipe: Pipe = field(init=False)
    produced: list[Any] = field(default_factory=list)  # every token, as the thread saw it
    done: bool = False
    error: str | None = None
    text: str = ""  # drawn so far
    count: int = 0  # tokens drawn so far
    drawn: int = 0  # draws so far: the first is never deferred
    draw_scheduled: bool = False
    started: float = field(default_factory=time.perf_counter)
    reported: bool = False  # the UI has drawn everything and shown how it ended

    @property
    def cancelled(self) -> bool:
        """Stopped by the user (or the app closing), not by an error."""
        return self.cancel.is_set() and self.error is None

    def produced_text(self) -> str:
        return "".join(t.text for t in self.produced)


class JobMessage(Message, bubble=False):
    """About one streaming job of a pane; posted from the job's thread to the pane itself."""

    def __init__(self, job: StreamJob) -> None:
        super().__init__()
        self.job = job


class StreamingPane(Vertical):
    """A tab that streams one model's tokens onto the screen (see the module docstring).

    Subclasses set :attr:`KIND`, :attr:`MODEL_NOUN` and :attr:`STATUS_ID`, and implement
    :meth:`produce`, :meth:`draw`, :meth:`finish` and :meth:`status_line`; :meth:`stored` is optional.
    They extend ``set_loading``/``set_model``/``set_no_model`` (calling ``super()``) to show the state.
    """

    #: Most redraws per second while a model streams: a char LM makes thousands of characters a
    #: second, and redrawing for each batch would leave the UI no time for key presses.
    FPS: ClassVar[int] = 30
    #: The model kind this pane runs (``chatrnn.tui.loading.CHAT`` or ``LM``).
    KIND: ClassVar[str]
    #: What the pane calls its model in messages ("the chat model is still loading…").
    MODEL_NOUN: ClassVar[str]
    #: The id of the pane's one-line status widget.
    STATUS_ID: ClassVar[str]

    class Drain(JobMessage):
        """New tokens are waiting in ``job``'s pipe, or it ended."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.model: Any = None
        self.model_name = ""
        self.model_loading = False
        self.job: StreamJob | None = None
        #: Where finished runs are stored; the app hands it over once it is open.
        self.store: Store | None = None
        #: The stored conversation this pane adds to (None: a new one starts with the next run).
        self.conversation_id: int | None = None
        #: What the pane is doing, the last part of the status line ("ready", "stopped", ...).
        self.activity = ""
        self._last_draw = 0.0

    def on_unmount(self) -> None:
        if self.job is not None:
            self.job.cancel.set()  # the app is closing: let the model thread finish

    # ---- model ---------------------------------------------------------------------------
    def set_loading(self, name: str) -> None:
        self.model_loading = True

    def set_model(self, model: Any, name: str = "") -> None:
        self.model_loading = False
        self.model = model
        self.model_name = name or model_label(model)

    def set_no_model(self, message: str | None = None) -> None:
        self.model_loading = False

    def has_model(self, title: str) -> bool:
        """True when a model is loaded; else say why not (still loading, or none trained)."""
        if self.model is not None:
            return True
        self.notify(
            f"the {self.MODEL_NOUN} is still loading…" if self.model_loading else missing_message(self.KIND),
            severity="warning",
            title=title,
        )
        return False

    # ---- running -------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.job is not None and not self.job.done

    def start_job(self, job: StreamJob) -> None:
        """Make ``job`` the pane's current job and run it on a thread worker."""
        job.pipe = Pipe(lambda: self.post_message(self.Drain(job)))
        self.job = job
        self._run(job)

    def action_stop(self) -> None:
        if self.running:
            self.job.cancel.set()
            self.set_status("stopping…")

    @work(thread=True, group="stream", exit_on_error=False)
    def _run(self, job: StreamJob) -> None:
        """The worker thread: pass the model's tokens to the pipe until it ends or is cancelled.

        A failure never escapes (it would end the app): it becomes ``job.error``, drawn as the
        job's end. :meth:`stored` runs here too, so a slow disk never stalls the UI and a run
        stopped by quitting is still saved."""
        tokens = self.produce(job)
        try:
            for tok in tokens:
                job.pipe.put(tok)
                job.produced.append(tok)
                if job.cancel.is_set():
                    break
        except ChatrnnError as e:
            job.error = str(e)
        except Exception as e:  # a bug or a broken model: say so, keep the app alive
            log.exception("%s stream failed", self.KIND)
            job.error = f"{e.__class__.__name__}: {e}"
        finally:
            tokens.close()  # tells the model to stop now, not when the generator is collected
            try:
                self.stored(job)
            except Exception:  # stored() reports store errors itself; anything else is a bug
                log.exception("storing the %s run failed", self.KIND)
            job.done = True
            self.post_message(self.Drain(job))

    def produce(self, job: StreamJob) -> Generator[Any, None, None]:
        """In the worker thread: the model's tokens for ``job`` (each with a ``text``)."""
        raise NotImplementedError

    def stored(self, job: StreamJob) -> None:
        """In the worker thread, after the last token: store the run (default: nothing)."""

    # ---- drawing -------------------------------------------------------------------------
    def on_streaming_pane_drain(self, event: Drain) -> None:
        """Draw what arrived: a job's first tokens at once, then at most :data:`FPS` draws a
        second; until the deferred draw, tokens wait in the pipe (which posts no more wake-ups)."""
        job = event.job
        wait = self._last_draw + 1 / self.FPS - time.perf_counter()
        if wait > 0 and job.drawn and not job.done:
            if not job.draw_scheduled:
                job.draw_scheduled = True
                self.set_timer(wait, lambda: self._deferred_drain(job))
            return
        self._drain(job)

    def _deferred_drain(self, job: StreamJob) -> None:
        job.draw_scheduled = False
        self._drain(job)

    def _drain(self, job: StreamJob) -> None:
        self._last_draw = time.perf_counter()
        items = job.pipe.take()
        if items:
            job.drawn += 1
            job.count += len(items)
            job.text += "".join(t.text for t in items)
            self.draw(job, items)
        if job.done and not job.reported:
            job.reported = True
            self.finish(job)

    def draw(self, job: StreamJob, items: list[Any]) -> None:
        """Show ``items``, the tokens that arrived since the last draw (``job.text`` has them)."""
        raise NotImplementedError

    def finish(self, job: StreamJob) -> None:
        """Show how ``job`` ended (done, stopped or failed); every token is drawn by now."""
        raise NotImplementedError

    # ---- status --------------------------------------------------------------------------
    def set_status(self, activity: str | None = None) -> None:
        """Redraw the status line; ``activity`` (when given) replaces its last part."""
        if activity is not None:
            self.activity = activity
        # one line, fixed size: no layout pass. As Text: it names the model (a checkpoint's name and
        # strings), which must show as typed, never as markup or control characters.
        line = Text(clean_text(self.status_line(), 500), no_wrap=True)
        self.query_one(f"#{self.STATUS_ID}", Static).update(line, layout=False)

    def status_line(self) -> str:
        """The status line: the model, the settings that matter, :attr:`activity`."""
        raise NotImplementedError
