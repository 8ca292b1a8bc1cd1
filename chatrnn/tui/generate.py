"""The Generate tab: sample from the char LM, streamed, with the sampling distribution in view.

Keys (see the footer): Enter in the seed box generates, Esc stops, ctrl+r regenerates from the same
seed, ``[``/``]`` lower/raise the temperature by 0.1 (when the cursor is not in a text box; the
value can also be typed), ctrl+t shows the top candidates and their probabilities at each step,
ctrl+b switches to side-by-side temperatures (``temperatures.py``: one seed, two to four columns
streamed at once), ctrl+g to the Neurons view (``neurons.py``: the text coloured by one unit,
its gates at the cursor, the units ranked per text feature).

The streaming itself (worker, pipe, throttled drawing, status) is :class:`StreamingPane`'s.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, replace
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Input, Label, Static

from chatrnn.decoding import GenerateSettings, set_value, to_dict
from chatrnn.errors import ChatrnnError
from chatrnn.tui import neurons as nv
from chatrnn.tui.loading import LM, AdaptSummary, adapt_model, model_folder, rank_units, trace_states, train_hint
from chatrnn.tui.messages import ConversationsChanged, Notice
from chatrnn.tui.streaming import StreamingPane, StreamJob
from chatrnn.tui.temperatures import ColumnToken, TemperatureColumns, interleave, parse_temperatures
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
    probe: bool = False  # the Neurons view: every token carries every unit's values
    seed_states: dict[str, Any] | None = None  # (probe) the seed's values, traced before the first token
    seed_shown: bool = False


@dataclass(kw_only=True)
class TemperaturesJob(GenJob):
    """One seed, several temperatures, one thread (see ``temperatures.py``)."""

    temperatures: tuple[float, ...]
    rng_seed: int  # shared by every column: the same random draws, only the temperature differs

    def column_text(self, column: int) -> str:
        return "".join(t.text for t in self.produced if t.column == column)


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
        # not in the footer (it is full): F1's help, the command palette and the README list them
        Binding("ctrl+b", "toggle_temperatures", "Side by side", show=False),
        Binding("ctrl+g", "toggle_neurons", "Neurons", show=False),
        Binding("f6", "app.adapt_file", "Adapt", show=False),  # a path prompt, then start_adapt
    ]

    #: The views of the tab's body: one text with its candidates, temperatures side by side, or
    #: the text coloured by one unit's activation.
    VIEWS = ("text", "temperatures", "neurons")

    class Ranked(Message):
        """The ranking worker ended: ``ranking`` (None: none possible, ``note`` says why)."""

        def __init__(self, model: Any, ranking: dict | None, source: str, note: str = "") -> None:
            super().__init__()
            self.model, self.ranking, self.source, self.note = model, ranking, source, note

    class Adapted(Message):
        """The adapt worker ended (``chatrnn.adapt``): its summary, or the one-line error."""

        def __init__(self, model: Any, summary: AdaptSummary | None, error: str = "") -> None:
            super().__init__()
            self.model, self.summary, self.error = model, summary, error

    class Traced(Message):
        """A finished text's values (the Neurons view opened after a plain run): ``ran`` is the
        text as the model read it (characters it never saw are dropped)."""

        def __init__(self, text: str, ran: str, states: dict[str, Any] | None, error: str | None = None) -> None:
            super().__init__()
            self.text, self.ran, self.states, self.error = text, ran, states, error

    def __init__(self, settings: GenerateSettings | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.settings = settings or GenerateSettings()
        self.job: GenJob | None = None
        self.last_seed: str | None = None
        self.show_candidates = False
        self.column_candidates = True  # side by side: each column's candidates (the point of the view)
        self.view = "text"
        self._ranked_for: Any = None  # the model the Neurons view's ranking is for (or being computed for)
        self._adapt_cancel: threading.Event | None = None  # set while adapting to a file
        self.adapt_note = ""  # "adapted to X: static → adapted", shown in the status line while it holds
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
        yield TemperatureColumns(id="gen-temps-view")
        yield nv.NeuronsView(id="gen-neurons-view")
        yield Static("", id="gen-status")

    def on_mount(self) -> None:
        self.query_one("#gen-cand-box").display = False
        self.query_one(TemperatureColumns).display = False
        self.query_one(nv.NeuronsView).display = False
        self.set_status()

    # ---- model ---------------------------------------------------------------------------
    def set_loading(self, name: str) -> None:
        super().set_loading(name)
        self.set_status(f"loading {name or 'the char model'}…")

    def set_model(self, model: Any, name: str = "") -> None:
        changed = model is not self.model
        super().set_model(model, name)
        self.adapt_note = ""  # a freshly loaded model is the trained one
        self.set_status("ready: type a seed and press Enter")
        if changed:  # another model: the Neurons view's ranking was the old one's
            self.query_one(nv.NeuronsView).clear_ranking()
            if self.view == "neurons":
                self._rank_if_needed()

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
        if self.view == "temperatures":
            return self._start_temperatures(seed)
        if self.view == "neurons":
            return self._start_neurons(seed)
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

    def _start_temperatures(self, seed: str) -> bool:
        view = self.query_one(TemperatureColumns)
        try:
            temps = parse_temperatures(self.query_one("#gen-temps", Input).value)
        except ChatrnnError as e:
            self.notify(str(e), severity="warning", title="temperatures")
            return False
        view.set_temperatures(temps)
        s = self.settings
        rng = s.rng_seed if s.rng_seed is not None else random.randrange(2**31)
        job = TemperaturesJob(seed=seed, settings=replace(s), temperatures=temps, rng_seed=rng, model=self.model)
        view.start(seed, f"top-k {s.top_k or 'all'}, top-p {s.top_p:.2f}")
        view.columns[0].output.focus()
        self.set_status(f"generating {len(temps)} columns…  (Esc stops all)")
        self.start_job(job)
        return True

    def _start_neurons(self, seed: str) -> bool:
        view = self.query_one(nv.NeuronsView)
        job = GenJob(seed=seed, settings=replace(self.settings), model=self.model, probe=True)
        view.start(seed[-SEED_CONTEXT:])
        view.text_view.focus()
        self.set_status("generating, every unit probed…  (Esc stops)")
        self.start_job(job)
        return True

    # ---- views ---------------------------------------------------------------------------
    def set_view(self, view: str) -> None:
        """Show one of :data:`VIEWS`; a run in progress in another view stops (its text stays)."""
        if view not in self.VIEWS:
            raise ValueError(view)
        if view == self.view:
            return
        self.action_stop()
        self.view = view
        # the side-by-side and Neurons views draw several widgets (or a colour per character)
        # per frame: fewer frames leave the UI time for keys while the model streams
        self.FPS = type(self).FPS if view == "text" else 15
        self.query_one("#gen-body").display = view == "text"
        temps = self.query_one(TemperatureColumns)
        temps.display = view == "temperatures"
        neurons = self.query_one(nv.NeuronsView)
        neurons.display = view == "neurons"
        if view == "temperatures":
            temps.show_candidates(self.column_candidates)
            self.set_status("side by side: Enter generates every temperature")
        elif view == "neurons":
            self.set_status("neurons: Enter generates with every unit probed")
            self._open_neurons()
        else:
            self.set_status("ready")

    def action_toggle_temperatures(self) -> None:
        self.set_view("text" if self.view == "temperatures" else "temperatures")

    def action_toggle_neurons(self) -> None:
        self.set_view("text" if self.view == "neurons" else "neurons")

    # ---- the Neurons view ----------------------------------------------------------------
    def _open_neurons(self) -> None:
        """Show the last plain run's text coloured (traced in a worker) and rank the units of
        this model once (cached next to its weights)."""
        view = self.query_one(nv.NeuronsView)
        job = self.job
        if (
            self.model is not None
            and job is not None
            and not job.probe
            and not isinstance(job, TemperaturesJob)
            and job.reported
            and job.text
        ):
            text = (job.seed + job.text)[-nv.MAX_CHARS :]
            view.start(text)
            self._trace(self.model, text)
        self._rank_if_needed()

    def _rank_if_needed(self, text: str = "") -> None:
        if self.model is None or self._ranked_for is self.model:
            return
        self._ranked_for = self.model
        self.query_one(nv.NeuronsView).set_rank_status("ranking units… (in the background)")
        self._rank(self.model, text)

    @work(thread=True, group="neurons-trace", exclusive=True, exit_on_error=False)
    def _trace(self, model: Any, text: str) -> None:
        try:
            self.post_message(self.Traced(text, *trace_states(model, text)))
        except ChatrnnError as e:
            self.post_message(self.Traced(text, text, None, str(e)))
        except Exception as e:  # a bug or a broken model: say so, keep the app alive
            self.post_message(self.Traced(text, text, None, f"{e.__class__.__name__}: {e}"))

    def on_generate_pane_traced(self, event: Traced) -> None:
        view = self.query_one(nv.NeuronsView)
        if event.error:
            self.notify(event.error, severity="error", title="neurons")
        elif not self.running and view.text == event.text:  # not if a new run replaced the text
            view.start(event.ran, event.states)

    @work(thread=True, group="neurons-rank", exclusive=True, exit_on_error=False)
    def _rank(self, model: Any, fallback: str) -> None:
        """In a worker: the cached ranking, else rank on the checkpoint's validation text (else on
        ``fallback``, the generated text) and cache it."""
        folder = getattr(model, "folder", None)
        try:
            cached = nv.read_cache(folder)
            if cached is not None:
                self.post_message(self.Ranked(model, cached["ranking"], str(cached.get("source", "cached"))))
                return
            found = nv.validation_text(folder, getattr(model, "config", {}) or {})
            if found is None:
                if len(fallback) < nv.MIN_RANK_CHARS:
                    self.post_message(
                        self.Ranked(
                            model,
                            None,
                            "",
                            "no validation text (the corpus files are not where training read them): generate "
                            f"{nv.MIN_RANK_CHARS}+ characters here and the units are ranked on them",
                        )
                    )
                    return
                text, source = fallback, "the generated text"
            else:
                text, source = found
            ranking = rank_units(model, text)
            nv.write_cache(folder, ranking, source, text)
            self.post_message(self.Ranked(model, ranking, source))
        except ChatrnnError as e:
            self.post_message(self.Ranked(model, None, "", str(e)))
        except Exception as e:  # a bug or a broken model: say so, keep the app alive
            self.post_message(self.Ranked(model, None, "", f"ranking failed: {e.__class__.__name__}: {e}"))

    def on_generate_pane_ranked(self, event: Ranked) -> None:
        if event.model is not self.model:
            return  # another model was loaded meanwhile
        view = self.query_one(nv.NeuronsView)
        if event.ranking is None:
            self._ranked_for = None  # try again later (e.g. on the generated text)
            view.set_rank_status(event.note)
            return
        view.set_ranking(event.ranking, event.source)

    @on(Input.Changed, "#gen-temps")
    def _temps_changed(self, event: Input.Changed) -> None:
        try:
            temps = parse_temperatures(event.value)
        except ChatrnnError:
            event.input.add_class("invalid")
            return
        event.input.remove_class("invalid")
        if not self.running:
            self.query_one(TemperatureColumns).set_temperatures(temps)

    @on(Input.Submitted, "#gen-temps")
    def _temps_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_generate()

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

        def stream(temperature: float, rng_seed: int | None, probe: bool = False) -> Iterator[Any]:
            return job.model.stream(
                seed,
                length=s.length,
                temperature=temperature,
                top_k=s.top_k,
                top_p=s.top_p,
                rng_seed=rng_seed,
                candidates=CANDIDATES,
                cancel=job.cancel,
                probe=probe,
            )

        if isinstance(job, TemperaturesJob):  # one seed, one sampling seed, a column per temperature
            yield from interleave([stream(t, job.rng_seed) for t in job.temperatures])
            return
        if job.probe and not unknown and seed:  # (a seed with skipped characters would not line up)
            try:
                ran, states = trace_states(job.model, seed)
                job.seed_states = states if ran == seed else None
            except ChatrnnError:
                job.seed_states = None  # the seed stays uncoloured; the stream is what matters
        yield from stream(s.temperature, s.rng_seed, probe=job.probe)

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
            if isinstance(job, TemperaturesJob):  # one reply per column, each with its temperature
                for i, t in enumerate(job.temperatures):
                    settings = to_dict(replace(job.settings, temperature=t, rng_seed=job.rng_seed))
                    self.store.add_message(
                        cid, "bot", job.column_text(i), {**meta, "settings": settings, "side_by_side": i}
                    )
            else:
                self.store.add_message(cid, "bot", text, meta)
        except ChatrnnError as e:
            self.post_message(Notice(str(e), "error", "history"))
        self.post_message(ConversationsChanged())

    def draw(self, job: GenJob, items: list[Any]) -> None:
        if job is not self.job:
            return
        if isinstance(job, TemperaturesJob):
            self._draw_temperatures(job, items)
            return
        if job.probe:
            view = self.query_one(nv.NeuronsView)
            if job.seed_states is not None and not job.seed_shown:
                job.seed_shown = True
                view.start(job.seed[-SEED_CONTEXT:], job.seed_states)
            view.add(items)
            for t in items:  # the view keeps its own (float16, last MAX_CHARS) copy; ``job.produced``
                t.probe = None  # holds every token of the run, and 17+ KB a token would add up to GB
            if not job.done and time.perf_counter() - self._last_status > 0.5:
                self._last_status = time.perf_counter()
                self.set_status(f"generating, every unit probed…  {job.count:,} chars  (Esc stops)")
            return
        self.query_one(StreamView).append("".join(t.text for t in items))
        self.query_one(CandidatesView).add_steps([(t.text, list(t.candidates)) for t in items])
        if self.show_candidates:
            self._redraw_candidates()
        if not job.done and time.perf_counter() - self._last_status > 0.5:
            self._last_status = time.perf_counter()  # a count, not an animation: twice a second
            self.set_status(f"generating…  {job.count:,} chars  (Esc stops)")

    def _draw_temperatures(self, job: TemperaturesJob, items: list[ColumnToken]) -> None:
        view = self.query_one(TemperatureColumns)
        view.add(items, self.column_candidates)
        if not job.done and time.perf_counter() - self._last_status > 0.5:
            self._last_status = time.perf_counter()
            view.refresh_heads()
            per = job.count // max(1, len(job.temperatures))
            self.set_status(f"generating {len(job.temperatures)} columns…  {per:,} chars each  (Esc stops all)")

    def finish(self, job: GenJob) -> None:
        if job is not self.job:
            return
        elapsed = max(1e-9, time.perf_counter() - job.started)
        if isinstance(job, TemperaturesJob):
            self.query_one(TemperatureColumns).finish()
        elif job.probe:
            view = self.query_one(nv.NeuronsView)
            view.finish()
            if view.ranking is None and not job.error:
                self._rank_if_needed(view.text)  # no validation text: rank on what was generated
        else:
            self.query_one(StreamView).finish()
            self._redraw_candidates()
        if job.error:
            self.notify(job.error, severity="error", title="generate")
            self.set_status(f"failed: {job.error}")
        elif isinstance(job, TemperaturesJob):
            per = job.count // max(1, len(job.temperatures))
            how = "stopped after" if job.cancel.is_set() else "done:"
            self.set_status(f"{how} {per:,} chars × {len(job.temperatures)} in {elapsed:.1f}s · seed {job.rng_seed}")
        elif job.cancel.is_set():
            self.set_status(f"stopped after {job.count:,} chars  ·  ctrl+r regenerates")
        else:
            self.set_status(
                f"done: {job.count:,} chars in {elapsed:.1f}s ({job.count / elapsed:,.0f}/s)  ·  ctrl+r regenerates"
            )

    def action_toggle_candidates(self) -> None:
        if self.view == "temperatures":
            self.column_candidates = not self.column_candidates
            self.query_one(TemperatureColumns).show_candidates(self.column_candidates)
            return
        self.show_candidates = not self.show_candidates
        box = self.query_one("#gen-cand-box")
        box.display = self.show_candidates
        if self.show_candidates:
            self._redraw_candidates()

    def _redraw_candidates(self) -> None:
        self.query_one(CandidatesView).redraw()

    def show_output(self, seed: str, text: str) -> None:
        """Show a stored run (a reopened session)."""
        self.set_view("text")
        self.last_seed = seed
        self.query_one("#gen-seed", Input).value = seed
        out = self.query_one(StreamView)
        out.clear_text()
        out.append(seed, style="bold")
        out.append(text)

    def status_line(self) -> str:
        s = self.settings
        model = self.model_name or "no model"
        adapted = f"{self.adapt_note}  ·  " if self.adapt_note and self.adapt_note != self.activity else ""
        return (
            f"{model}  ·  length {s.length}  ·  top-k {s.top_k or 'all'}  ·  top-p {s.top_p:.2f}  ·  "
            f"{adapted}{self.activity}"
        )

    # ---- adapt to a file (dynamic evaluation: chatrnn/adapt.py, through loading.adapt_model) ----
    def start_adapt(self, path: str) -> bool:
        """Let the char model learn ``path`` in a worker thread; later runs sample with the adapted
        weights (the checkpoint on disk is untouched). Returns True when it started."""
        path = path.strip()
        if not path or not self.has_model("adapt"):
            return False
        if self._adapt_cancel is not None:
            self.notify("already adapting to a file (Esc stops it)", severity="warning", title="adapt")
            return False
        self.action_stop()
        self._adapt_cancel = threading.Event()
        self.set_status(f"adapting to {path}…  (Esc stops)")
        self._adapt(self.model, path, self._adapt_cancel)
        return True

    def action_stop(self) -> None:
        if self._adapt_cancel is not None:
            self._adapt_cancel.set()
        super().action_stop()

    @work(thread=True, group="adapt", exit_on_error=False)
    def _adapt(self, model: Any, path: str, cancel: threading.Event) -> None:
        last = [0.0]

        def progress(done: int, total: int) -> None:
            now = time.perf_counter()
            if now - last[0] > 0.5:  # twice a second, as the generation count
                last[0] = now
                self.app.call_from_thread(self.set_status, f"adapting… {100 * done // max(total, 1)}%  (Esc stops)")

        try:
            self.post_message(self.Adapted(model, adapt_model(model, path, cancel, progress)))
        except ChatrnnError as e:
            self.post_message(self.Adapted(model, None, str(e)))
        except Exception as e:  # a failure must reach the screen, never end the app
            self.post_message(self.Adapted(model, None, f"adapting failed: {e.__class__.__name__}: {e}"))

    def on_generate_pane_adapted(self, event: Adapted) -> None:
        self._adapt_cancel = None
        if event.model is not self.model:
            return  # another model was loaded meanwhile
        if event.summary is None:
            self.notify(event.error, severity="error", title="adapt")
            self.set_status(f"adapt failed: {event.error}")
            return
        if not event.summary.cancelled:
            self.adapt_note = event.summary.text()
        self.set_status(event.summary.text())
