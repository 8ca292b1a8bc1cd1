"""The Generate tab: sample from the char LM, streamed, with the sampling distribution in view.

Keys (see the footer): Enter in the seed box generates, Esc stops, ctrl+r regenerates from the same
seed, ``[``/``]`` lower/raise the temperature by 0.1 (when the cursor is not in a text box; the
value can also be typed), ctrl+t shows the top candidates and their probabilities at each step.

The streaming itself (worker, pipe, throttled drawing, status) is :class:`StreamingPane`'s.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator
from dataclasses import dataclass, replace
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, Label, Static

from chatrnn.decoding import GenerateSettings, set_value, to_dict
from chatrnn.errors import ChatrnnError
from chatrnn.tui.loading import LM, model_folder, train_hint
from chatrnn.tui.messages import ConversationsChanged, Notice
from chatrnn.tui.streaming import StreamingPane, StreamJob
from chatrnn.tui.widgets import CandidatesView, StreamView, TemperatureBar

#: Candidates asked of the model at every step (cheap: a top-k over the vocabulary).
CANDIDATES = 8
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


@dataclass(kw_only=True)
class GenJob(StreamJob):
    seed: str
    settings: GenerateSettings


class GeneratePane(StreamingPane):
    """Seed box, settings row (temperature as a number and a bar), output, candidates.

    Every run is stored in this session's generate conversation (``conversation_id``), with the
    settings it used."""

    KIND = LM
    MODEL_NOUN = "char model"
    STATUS_ID = "gen-status"

    BINDINGS = [
        Binding("escape", "stop", "Stop"),
        Binding("ctrl+r", "regenerate", "Regenerate"),
        Binding("left_square_bracket", "temp(-0.1)", "Temp -", key_display="["),
        Binding("right_square_bracket", "temp(0.1)", "Temp +", key_display="]"),
        Binding("ctrl+t", "toggle_candidates", "Candidates"),
    ]

    def __init__(self, settings: GenerateSettings | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.settings = settings or GenerateSettings()
        self.job: GenJob | None = None
        self.last_seed: str | None = None
        self.show_candidates = False
        self._last_status = 0.0
        self._session_lock = threading.Lock()  # two runs' threads must not both create the session

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
        self.set_status()

    # ---- model ---------------------------------------------------------------------------
    def set_loading(self, name: str) -> None:
        super().set_loading(name)
        self.set_status(f"loading {name or 'the char model'}…")

    def set_model(self, model: Any, name: str = "") -> None:
        super().set_model(model, name)
        self.set_status("ready: type a seed and press Enter")

    def set_no_model(self, message: str | None = None) -> None:
        super().set_no_model(message)
        if self.model is None:
            out = self.query_one(StreamView)
            out.clear_text()
            out.append(message or train_hint(LM), style="yellow")
            self.set_status("no char model loaded")

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
        self.set_status()

    def change(self, name: str, raw: str | float | int) -> None:
        """Set one setting (raises ChatrnnError with the reason when out of range)."""
        self.apply_settings(set_value(self.settings, name, raw))
        self._store_settings()

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
        self._store_settings()

    @on(Input.Submitted, ".field")
    def _field_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        name = next(n for fid, n, _, _ in FIELDS if fid == event.input.id)
        try:
            set_value(self.settings, name, event.value.strip())
        except ChatrnnError as e:
            self.notify(str(e), severity="warning", title="setting")
            return
        self.action_generate()

    def _store_settings(self) -> None:
        """A stored session keeps the settings last used with it (they come back when reopened)."""
        if self.conversation_id is None or self.store is None:
            return
        try:
            self.store.update_settings(self.conversation_id, {"generate": to_dict(self.settings)})
        except ChatrnnError as e:
            self.notify(str(e), severity="error", title="history")

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

    def start(self, seed: str) -> bool:
        """Generate from ``seed`` (stopping a run in progress). Returns True when a run started."""
        if not self.has_model("generate"):
            return False
        if self.running:
            self.job.cancel.set()
        self.last_seed = seed
        job = GenJob(seed=seed, settings=replace(self.settings), model=self.model)
        out = self.query_one(StreamView)
        out.clear_text()
        out.append(seed, style="bold")
        header = (
            f"top {CANDIDATES} candidates per step · temperature {job.settings.temperature:.2f}, "
            f"top-k {job.settings.top_k or 'all'}, top-p {job.settings.top_p:.2f}"
        )
        self.query_one(CandidatesView).clear_steps(header)
        out.focus()
        self.set_status("generating…  (Esc stops)")
        self.start_job(job)
        return True

    def new_session(self) -> None:
        """The next run starts a new stored session."""
        self.conversation_id = None
        self.query_one(StreamView).clear_text()

    def produce(self, job: GenJob) -> Generator[Any, None, None]:
        s = job.settings
        seed = job.seed[-SEED_CONTEXT:]
        _, unknown = job.model.prepare_seed(seed)
        if unknown:
            shown = ", ".join(repr(c) for c in sorted(set(unknown))[:10])
            self.post_message(Notice(f"skipping seed characters this model never saw: {shown}", "warning", "seed"))
        yield from job.model.stream(
            seed,
            length=s.length,
            temperature=s.temperature,
            top_k=s.top_k,
            top_p=s.top_p,
            rng_seed=s.rng_seed,
            candidates=CANDIDATES,
            cancel=job.cancel,
        )

    def stored(self, job: GenJob) -> None:
        """Store the finished (or stopped) run in this session's generate conversation."""
        text = job.produced_text()
        if self.store is None or (not text and job.error):
            return
        meta: dict[str, Any] = {"settings": to_dict(job.settings)}
        if job.cancel.is_set():
            meta["cancelled"] = True
        try:
            with self._session_lock:
                if self.conversation_id is None:
                    conv = self.store.create_conversation(
                        mode="generate",
                        checkpoint=model_folder(job.model),
                        settings={"generate": to_dict(job.settings)},
                    )
                    self.conversation_id = conv.id
                cid = self.conversation_id
            self.store.add_message(cid, "user", job.seed)
            self.store.add_message(cid, "bot", text, meta)
        except ChatrnnError as e:
            self.post_message(Notice(str(e), "error", "history"))
        self.post_message(ConversationsChanged())

    def draw(self, job: GenJob, items: list[Any]) -> None:
        if job is not self.job:
            return
        self.query_one(StreamView).append("".join(t.text for t in items))
        self.query_one(CandidatesView).add_steps([(t.text, list(t.candidates)) for t in items])
        if self.show_candidates:
            self._redraw_candidates()
        if not job.done and time.perf_counter() - self._last_status > 0.5:
            self._last_status = time.perf_counter()  # a count, not an animation: twice a second
            self.set_status(f"generating…  {job.count:,} chars  (Esc stops)")

    def finish(self, job: GenJob) -> None:
        if job is not self.job:
            return
        elapsed = max(1e-9, time.perf_counter() - job.started)
        self.query_one(StreamView).finish()
        self._redraw_candidates()
        if job.error:
            self.notify(job.error, severity="error", title="generate")
            self.set_status(f"failed: {job.error}")
        elif job.cancel.is_set():
            self.set_status(f"stopped after {job.count:,} chars  ·  ctrl+r regenerates")
        else:
            self.set_status(
                f"done: {job.count:,} chars in {elapsed:.1f}s ({job.count / elapsed:,.0f}/s)  ·  ctrl+r regenerates"
            )

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

    def status_line(self) -> str:
        s = self.settings
        model = self.model_name or "no model"
        return f"{model}  ·  length {s.length}  ·  top-k {s.top_k or 'all'}  ·  top-p {s.top_p:.2f}  ·  {self.activity}"
