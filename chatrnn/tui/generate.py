"""The Generate tab: sample from the char LM, streamed, with the sampling distribution in view.

Keys (see the footer): Enter in the seed box generates, Esc stops, ctrl+r regenerates from the same
seed, ``[``/``]`` lower/raise the temperature by 0.1 (when the cursor is not in a text box; the
value can also be typed), ctrl+t shows the top candidates and their probabilities at each step.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Input, Label, Static

from chatrnn.decoding import GenerateSettings, set_value
from chatrnn.errors import ChatrnnError
from chatrnn.tui.models import Pipe, missing_message, model_label, train_hint
from chatrnn.tui.widgets import CandidatesView, JobMessage, Notice, StreamView, TemperatureBar

#: Candidates asked of the model at every step (cheap: a top-k over the vocabulary).
CANDIDATES = 8
#: Most redraws of the output per second while the model streams.
FPS = 30
#: Characters of the seed the model is primed on: a recurrent state forgets long before this, and
#: priming on a 100 KB paste one character at a time would take seconds.
SEED_CONTEXT = 2000
#: Fields of the settings row: (input id, setting name, label, width).
FIELDS = (
    ("gen-temp", "temperature", "temp", 7),
    ("gen-length", "length", "length", 8),
    ("gen-top-k", "top_k", "top-k", 6),
    ("gen-top-p", "top_p", "top-p", 6),
)


@dataclass
class GenJob:
    seed: str
    settings: GenerateSettings
    model: object
    cancel: threading.Event = field(default_factory=threading.Event)
    pipe: Pipe | None = None
    done: bool = False
    error: str | None = None
    text: str = ""
    started: float = field(default_factory=time.perf_counter)
    count: int = 0
    reported: bool = False  # the UI has drawn everything and shown how it ended


class GeneratePane(Vertical):
    """Seed box, settings row (temperature as a number and a bar), output, candidates."""

    BINDINGS = [
        Binding("escape", "stop", "Stop"),
        Binding("ctrl+r", "regenerate", "Regenerate"),
        Binding("left_square_bracket", "temp(-0.1)", "Temp -", key_display="["),
        Binding("right_square_bracket", "temp(0.1)", "Temp +", key_display="]"),
        Binding("ctrl+t", "toggle_candidates", "Candidates"),
    ]

    class Drain(JobMessage):
        """New characters are waiting in ``job``."""

    class Finished(JobMessage):
        """A run ended (done, stopped or failed) and is drawn; the generation thread stored it."""

    def __init__(self, settings: GenerateSettings | None = None, **kw) -> None:
        super().__init__(**kw)
        self.settings = settings or GenerateSettings()
        self.model = None
        self.model_name = ""
        self.model_loading = False
        self.job: GenJob | None = None
        self.last_seed: str | None = None
        self.show_candidates = False
        self._last_draw = 0.0
        self._last_status = 0.0
        self._draw_scheduled = False

    def compose(self) -> ComposeResult:
        yield Input(placeholder="Seed text, then Enter to generate (empty: start from scratch)", id="gen-seed")
        with Horizontal(id="gen-settings"):
            yield TemperatureBar(self.settings.temperature, id="gen-temp-bar")
            for fid, name, label, _ in FIELDS:
                yield Label(label, classes="field-label")
                yield Input(self._fmt(name), id=fid, classes="field", compact=True)
        with Horizontal(id="gen-body"):
            yield StreamView(id="gen-output")
            with Vertical(id="gen-cand-box"):
                yield CandidatesView(id="gen-candidates")
        yield Static("", id="gen-status")

    def on_mount(self) -> None:
        self.query_one("#gen-cand-box").display = False
        self._status()

    def on_unmount(self) -> None:
        if self.job is not None:
            self.job.cancel.set()  # the app is closing: let the model thread finish

    # ---- model ---------------------------------------------------------------------------
    def set_loading(self, name: str) -> None:
        self.model_loading = True
        self._status(f"loading {name or 'the char model'}…")

    def set_model(self, model, name: str = "") -> None:
        self.model_loading = False
        self.model = model
        self.model_name = name or model_label(model)
        self._status("ready: type a seed and press Enter")

    def set_no_model(self, message: str | None = None) -> None:
        self.model_loading = False
        if self.model is None:
            out = self.query_one(StreamView)
            out.clear_text()
            out.append(message or train_hint("charlm"), style="yellow")
            self._status("no char model loaded")

    # ---- settings ------------------------------------------------------------------------
    def _fmt(self, name: str) -> str:
        v = getattr(self.settings, name)
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    def apply_settings(self, settings: GenerateSettings) -> None:
        """Show ``settings`` (e.g. those stored with a reopened session)."""
        self.settings = settings
        for fid, name, _, _ in FIELDS:
            box = self.query_one(f"#{fid}", Input)
            with box.prevent(Input.Changed):
                box.value = self._fmt(name)
            box.remove_class("invalid")
        self.query_one(TemperatureBar).set_value(settings.temperature)
        self._status()

    def change(self, name: str, raw) -> None:
        """Set one setting (raises ChatrnnError with the reason when out of range)."""
        self.apply_settings(set_value(self.settings, name, raw))
        self.post_message(SettingsChanged(self.settings))

    def action_temp(self, delta: float) -> None:
        t = round(min(10.0, max(0.0, self.settings.temperature + delta)), 2)
        self.change("temperature", t)

    @on(Input.Changed, ".field")
    def _field_changed(self, event: Input.Changed) -> None:
        name = next(n for fid, n, _, _ in FIELDS if fid == event.input.id)
        try:
            new = set_value(self.settings, name, event.value.strip())
        except ChatrnnError:
            event.input.add_class("invalid")
            return
        event.input.remove_class("invalid")
        self.settings = new
        if name == "temperature":
            self.query_one(TemperatureBar).set_value(new.temperature)
        self.post_message(SettingsChanged(self.settings))

    @on(Input.Submitted, ".field")
    def _field_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        name = next(n for fid, n, _, _ in FIELDS if fid == event.input.id)
        try:
            set_value(self.settings, name, event.value.strip())
        except ChatrnnError as e:
            self.app.notify(str(e), severity="warning", title="setting")
            return
        self.action_generate()

    # ---- generation ----------------------------------------------------------------------
    @on(Input.Submitted, "#gen-seed")
    def _seed_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.start(event.value)

    def action_generate(self) -> None:
        self.start(self.query_one("#gen-seed", Input).value)

    def action_regenerate(self) -> None:
        seed = self.last_seed if self.last_seed is not None else self.query_one("#gen-seed", Input).value
        self.start(seed)

    @property
    def running(self) -> bool:
        return self.job is not None and not self.job.done

    def start(self, seed: str) -> bool:
        if self.model is None:
            self.app.notify(
                "the char model is still loading…" if self.model_loading else missing_message("charlm"),
                severity="warning",
                title="generate",
            )
            return False
        if self.running:
            self.job.cancel.set()
        self.last_seed = seed
        job = GenJob(seed=seed, settings=replace(self.settings), model=self.model)
        job.pipe = Pipe(lambda: self.post_message(self.Drain(job)))
        self.job = job
        out = self.query_one(StreamView)
        out.clear_text()
        out.append(seed, style="bold")
        header = (
            f"top {CANDIDATES} candidates per step · temperature {job.settings.temperature:.2f}, "
            f"top-k {job.settings.top_k or 'all'}, top-p {job.settings.top_p:.2f}"
        )
        self.query_one(CandidatesView).clear_steps(header)
        out.focus()
        self._status("generating…  (Esc stops)")
        self._run(job)
        return True

    @work(thread=True, group="generate", exit_on_error=False)
    def _run(self, job: GenJob) -> None:
        s = job.settings
        seed = job.seed[-SEED_CONTEXT:]
        produced: list[str] = []
        try:
            _, unknown = job.model.prepare_seed(seed)
            if unknown:
                shown = ", ".join(repr(c) for c in sorted(set(unknown))[:10])
                self.post_message(Notice(f"skipping seed characters this model never saw: {shown}", "warning", "seed"))
            for tok in job.model.stream(
                seed,
                length=s.length,
                temperature=s.temperature,
                top_k=s.top_k,
                top_p=s.top_p,
                rng_seed=s.rng_seed,
                candidates=CANDIDATES,
                cancel=job.cancel,
            ):
                job.pipe.put(tok)
                produced.append(tok.text)
                if job.cancel.is_set():
                    break
        except ChatrnnError as e:
            job.error = str(e)
        except Exception as e:  # a bug or a broken model: say so, keep the app alive
            job.error = f"{e.__class__.__name__}: {e}"
        finally:
            save = getattr(self.app, "save_generate", None)
            if save is not None:
                save(job, "".join(produced))
            job.done = True
            self.post_message(self.Drain(job))

    def on_generate_pane_drain(self, event: Drain) -> None:
        """Draw what the model produced since the last drain, at most :data:`FPS` times a second:
        a char LM makes thousands of characters a second, and redrawing for each batch would
        leave the UI no time for key presses. Until the deferred draw, tokens wait in the pipe."""
        job = event.job
        wait = self._last_draw + 1 / FPS - time.perf_counter()
        if wait > 0 and not job.done:
            if not self._draw_scheduled:
                self._draw_scheduled = True
                self.set_timer(wait, lambda: self._deferred_draw(job))
            return
        self._last_draw = time.perf_counter()
        items = job.pipe.take()
        if items:
            text = "".join(t.text for t in items)
            job.text += text
            job.count += len(items)
            if job is self.job:
                self.query_one(StreamView).append(text)
                cands = self.query_one(CandidatesView)
                cands.add_steps([(t.text, list(t.candidates)) for t in items])
                if self.show_candidates:
                    self._redraw_candidates()
        if job.done and not job.reported:
            job.reported = True
            self._finish(job)
        elif job is self.job and items and time.perf_counter() - self._last_status > 0.5:
            self._last_status = time.perf_counter()  # a count, not an animation: twice a second
            self._status(f"generating…  {job.count:,} chars  (Esc stops)")

    def _deferred_draw(self, job: GenJob) -> None:
        self._draw_scheduled = False
        self.on_generate_pane_drain(self.Drain(job))

    def _finish(self, job: GenJob) -> None:
        elapsed = max(1e-9, time.perf_counter() - job.started)
        if job is self.job:
            self.query_one(StreamView).finish()
            self._redraw_candidates()
            if job.error:
                self.app.notify(job.error, severity="error", title="generate")
                self._status(f"failed: {job.error}")
            elif job.cancel.is_set():
                self._status(f"stopped after {job.count:,} chars  ·  ctrl+r regenerates")
            else:
                self._status(
                    f"done: {job.count:,} chars in {elapsed:.1f}s ({job.count / elapsed:,.0f}/s)  ·  ctrl+r regenerates"
                )
        self.post_message(self.Finished(job))

    def action_stop(self) -> None:
        if self.running:
            self.job.cancel.set()
            self._status("stopping…")

    def action_toggle_candidates(self) -> None:
        self.show_candidates = not self.show_candidates
        box = self.query_one("#gen-cand-box")
        box.display = self.show_candidates
        if self.show_candidates:
            self._redraw_candidates()

    def _redraw_candidates(self) -> None:
        self.query_one(CandidatesView).redraw()

    def show_output(self, seed: str, text: str) -> None:
        """Show a stored run (a reopened session)."""
        self.last_seed = seed
        self.query_one("#gen-seed", Input).value = seed
        out = self.query_one(StreamView)
        out.clear_text()
        out.append(seed, style="bold")
        out.append(text)

    def _status(self, state: str | None = None) -> None:
        if state is not None:
            self._state = state
        s = self.settings
        model = self.model_name or "no model"
        self.query_one("#gen-status", Static).update(  # one line, fixed size: no layout pass
            f"{model}  ·  length {s.length}  ·  top-k {s.top_k or 'all'}  ·  top-p {s.top_p:.2f}  ·  "
            f"{getattr(self, '_state', '')}",
            layout=False,
        )


class SettingsChanged(Message):
    """The generate settings changed (the app persists them)."""

    def __init__(self, settings: GenerateSettings) -> None:
        super().__init__()
        self.settings = settings
