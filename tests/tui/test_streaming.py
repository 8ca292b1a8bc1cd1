"""The streaming machinery both tabs share (``chatrnn.tui.streaming``): the coalescing pipe, and
the StreamingPane base driven through the real app: throttled drawing, the status line, failures,
and the thread workers that run the models."""

from __future__ import annotations

import logging
import threading
import time

from chatrnn.decoding import GenerateSettings
from chatrnn.tui.streaming import Pipe, StreamingPane

SIZE = (100, 32)


def test_pipe_coalesces_wakeups():
    wakes = []
    pipe = Pipe(lambda: wakes.append(1))
    for i in range(100):
        pipe.put(i)
    assert len(wakes) == 1 and pipe.take() == list(range(100)) and pipe.take() == []
    pipe.put("x")
    assert len(wakes) == 2

    # from many threads: nothing lost
    got = []
    pipe = Pipe(lambda: None)
    threads = [threading.Thread(target=lambda k=k: [pipe.put((k, i)) for i in range(500)]) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = pipe.take()
    assert len(got) == 2000


def status(app, pane) -> str:
    return str(app.query_one(f"#{pane.STATUS_ID}").render())


async def test_both_tabs_are_streaming_panes_with_their_own_status(make_app, fakes):
    app = make_app(loader=fakes.Loader(chat=fakes.Responder(), lm=fakes.Generator()))
    async with app.run_test(size=SIZE) as pilot:
        await fakes.wait_for(pilot, lambda: app.chat.model is not None and app.gen.model is not None)
        assert isinstance(app.chat, StreamingPane) and isinstance(app.gen, StreamingPane)
        assert app.chat.STATUS_ID != app.gen.STATUS_ID
        assert status(app, app.chat).endswith("ready") and "scripted-chat" in status(app, app.chat)
        assert status(app, app.gen).endswith("ready: type a seed and press Enter")
        app.chat.set_status("busy")
        assert app.chat.activity == "busy" and status(app, app.chat) == app.chat.status_line()
        app.chat.set_status()  # redraw, same activity
        assert status(app, app.chat).endswith("busy")


async def test_a_fast_model_is_drawn_at_a_bounded_frame_rate(make_app, fakes):
    """Hundreds of tokens, each its own wake-up if the pipe were empty: the pane draws at most
    FPS times a second (plus the immediate first draw and the final one), and loses nothing."""
    gen = fakes.Generator(delay=0.001)
    app = make_app(loader=fakes.Loader(chat=fakes.Responder(), lm=gen), generate_settings=GenerateSettings(length=600))
    async with app.run_test(size=SIZE) as pilot:
        await fakes.wait_for(pilot, lambda: app.gen.model is not None)
        app.action_tab("generate")
        app.gen.start("")
        job = app.gen.job
        await fakes.wait_for(pilot, lambda: job.drawn >= 1)
        assert app.gen.running and "generating…" in status(app, app.gen)
        await fakes.wait_for(pilot, lambda: job.reported, timeout=30)
        elapsed = time.perf_counter() - job.started
        assert job.count == 600 and job.text == job.produced_text()
        assert app.query_one("#gen-output").plain == job.text
        assert job.drawn <= app.gen.FPS * elapsed + 3, (job.drawn, elapsed)
        assert job.drawn < job.count / 4  # coalesced: many tokens per draw
        assert status(app, app.gen).split("·")[-2].strip().startswith("done: 600 chars")


async def test_the_first_tokens_are_drawn_at_once(make_app, fakes):
    """The frame-rate limit never delays a job's first draw (the first reply token, the latency
    users feel), even right after another job's draw."""
    app = make_app(loader=fakes.Loader(chat=fakes.Responder(words=["one"]), lm=fakes.Generator()))
    async with app.run_test(size=SIZE) as pilot:
        await fakes.wait_for(pilot, lambda: app.chat.model is not None)
        for text in ("a", "b", "c"):
            app.chat.submit(text)
            job = app.chat.job
            await fakes.wait_for(pilot, lambda job=job: job.reported)
            assert job.drawn == 1 and job.text == "one" and not job.draw_scheduled
        await fakes.wait_for(pilot, lambda: len(app.chat.first_token_times) == 3)  # marked after the refresh
        assert status(app, app.chat).split("·")[-1].strip().startswith("replied in")


async def test_jobs_run_on_textual_thread_workers_and_stop_with_the_app(make_app, fakes):
    gen = fakes.Generator(delay=0.005)
    app = make_app(
        loader=fakes.Loader(chat=fakes.Responder(), lm=gen), generate_settings=GenerateSettings(length=100000)
    )
    async with app.run_test(size=SIZE) as pilot:
        await fakes.wait_for(pilot, lambda: app.gen.model is not None)
        app.gen.start("x")
        job = app.gen.job
        await fakes.wait_for(pilot, lambda: job.count > 3)
        workers = [w for w in app.workers if w.node is app.gen and w.group == "stream"]
        assert workers and all(w.is_running for w in workers)
        assert threading.current_thread() is threading.main_thread()
        # a new run stops the one in progress
        app.gen.start("y")
        await fakes.wait_for(pilot, lambda: job.done)
        assert job.cancel.is_set() and job.cancelled and app.gen.job is not job
        second = app.gen.job
    # quitting set the running job's cancel event: its thread ends instead of generating on
    assert second.cancel.is_set()
    deadline = time.monotonic() + 5
    while not second.done and time.monotonic() < deadline:
        time.sleep(0.01)
    assert second.done


async def test_a_failing_model_ends_the_job_with_its_error_logged(make_app, fakes, caplog):
    class Broken(fakes.Generator):
        def stream(self, *a, **k):
            yield from super().stream(*a, **{**k, "length": 5})
            raise ValueError("weights went NaN")

    app = make_app(loader=fakes.Loader(chat=fakes.Responder(), lm=Broken()))
    with caplog.at_level(logging.ERROR, logger="chatrnn.tui.streaming"):
        async with app.run_test(size=SIZE) as pilot:
            await fakes.wait_for(pilot, lambda: app.gen.model is not None)
            app.gen.start("s")
            await fakes.wait_for(pilot, lambda: app.gen.job.reported)
            job = app.gen.job
            assert job.error == "ValueError: weights went NaN" and not job.cancelled
            assert job.text == "the q"  # what came before the failure is kept on screen
            assert "failed: ValueError: weights went NaN" in status(app, app.gen)
            # notify() posts a message: the toast is in the list once the app has handled it
            await fakes.wait_for(pilot, lambda: any("weights went NaN" in n.message for n in app._notifications))
    assert any("stream failed" in r.getMessage() and r.exc_info for r in caplog.records)
