"""Bars of `chatrnn chat` (issue 4), measured with Textual's pilot on the real app and real models:

1. key press (Enter) to the first reply token on screen: median over 20 messages < 150 ms;
2. a key press is handled within 50 ms while a reply streams (and while the char LM streams).

"On screen" is the first screen refresh after the token reached the reply bubble (the app records
it with ``call_after_refresh``). Keys during streaming are posted the way the terminal driver posts
them (the pilot's ``press`` waits for the whole process to go idle, which never happens while a
model streams); "handled" is when the input box shows the typed character, or the temperature
changed, polled every millisecond. The input box is the Chat tab's multi-line ``ChatInput`` (a
TextArea); the keys during streaming are typed into it after a two-line draft, so they land in a
box that has already grown, as they would in a multi-line message.

    python benchmarks/tui_latency.py                      # checkpoints/chat and checkpoints/charlm
    python benchmarks/tui_latency.py --checkpoint chat --lm charlm --messages 20 --keys 20

Without checkpoints it trains the default models (the ``cpu`` presets on the bundled corpus) for a
few dozen steps in a temp folder: latency depends on the architecture, not on how well it learned.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import temp_home  # noqa: E402

MESSAGES = [
    "hello",
    "how are you?",
    "what is your name",
    "tell me a joke",
    "do you like music",
    "what time is it",
    "where do you live",
    "I am tired today",
    "good morning!",
    "what is love",
    "can you help me",
    "are you a robot",
    "what do you eat",
    "thank you",
    "who made you",
    "what is the weather like",
    "do you have friends",
    "I like pizza",
    "see you later",
    "bye",
]


def ensure_models(chat: str | None, lm: str | None, steps: int) -> tuple[str, str]:
    from chatrnn.checkpoint import checkpoints_root, resolve_checkpoint
    from chatrnn.errors import ChatrnnError

    def found(name, kind):
        try:
            return str(resolve_checkpoint(name, kind))
        except ChatrnnError:
            return None

    chat_path, lm_path = found(chat, "chat"), found(lm, "charlm")
    if chat_path and lm_path:
        return chat_path, lm_path
    temp_home()
    root = checkpoints_root()

    if not chat_path:
        from chatrnn.train.chat import ChatOptions, train_chat

        print(f"no chat checkpoint: training the default chat model for {steps} steps ...", flush=True)
        train_chat(ChatOptions(out=root / "chat", train=dict(max_steps=steps, evals=1)))
        chat_path = str(root / "chat")
    if not lm_path:
        from chatrnn.train.charlm import CharLMOptions, train_charlm

        print(f"no char LM checkpoint: training the default char LM for {steps} steps ...", flush=True)
        train_charlm(CharLMOptions(out=root / "charlm", train=dict(max_steps=steps, evals=1)))
        lm_path = str(root / "charlm")
    return chat_path, lm_path


def send_key(app, key: str, char: str | None = None) -> None:
    from textual import events

    event = events.Key(key, char if char is not None else (key if len(key) == 1 else None))
    event.set_sender(app)
    app._driver.send_message(event)


async def until(cond, timeout: float = 30.0, step: float = 0.001) -> float:
    """Poll ``cond`` every ``step`` seconds; the perf_counter time when it first held."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(step)
    return time.perf_counter()


def summary(name: str, ms: list[float], bar: float, stat: str = "median") -> bool:
    ms = sorted(ms)
    med = statistics.median(ms)
    p90 = ms[min(len(ms) - 1, int(round(0.9 * (len(ms) - 1))))]
    value = med if stat == "median" else ms[-1]
    ok = value < bar
    print(
        f"{name:<48} median {med:6.1f} ms   p90 {p90:6.1f} ms   max {ms[-1]:6.1f} ms   "
        f"(n={len(ms)}; bar: {stat} < {bar:.0f} ms: {'PASS' if ok else 'FAIL'})"
    )
    return ok


async def run(args) -> int:
    import tempfile

    from chatrnn.decoding import GenerateSettings, ReplySettings
    from chatrnn.tui.app import ChatrnnApp
    from chatrnn.tui.store import Store

    store = Store(Path(tempfile.mkdtemp(prefix="chatrnn-tui-bench-")) / "history.sqlite3")  # on disk, as for users
    app = ChatrnnApp(
        chat_checkpoint=args.checkpoint,
        lm_checkpoint=args.lm,
        store=store,
        reply_settings=ReplySettings(),
        generate_settings=GenerateSettings(length=100000),
    )
    ok = True
    async with app.run_test(size=(120, 40)) as pilot:
        t = time.perf_counter()
        await until(lambda: not app.chat.model_loading and not app.gen.model_loading, timeout=300, step=0.01)
        if app.chat.model is None or app.gen.model is None:
            print("could not load the models: " + "; ".join(n.message for n in app._notifications))
            return 2
        print(
            f"models loaded in {time.perf_counter() - t:.1f}s (worker thread; the UI was up meanwhile): "
            f"chat {app.chat.model_name}, char LM {app.gen.model_name}"
        )
        box = app.query_one("#chat-input")

        # 1. Enter -> first reply token on screen
        first: list[float] = []
        lengths: list[int] = []
        for msg in (MESSAGES * 5)[: args.messages]:
            box.value = msg
            n = len(app.chat.first_token_times)
            before = app.chat.job
            t0 = time.perf_counter()
            await pilot.press("enter")
            await until(lambda before=before: app.chat.job is not before and app.chat.job.reported)
            if len(app.chat.first_token_times) > n:
                first.append((app.chat.first_token_times[n] - t0) * 1000)
                lengths.append(len(app.chat.job.pieces))
            await pilot.pause(0.05)
        if len(first) < len(MESSAGES[: args.messages]):
            print(f"note: {args.messages - len(first)} replies were empty (no token to time)")
        ok &= summary("Enter -> first reply token on screen", first, 150)
        print(f"{'':<48} (in order: {' '.join(f'{x:.0f}' for x in first)})")
        print(f"{'':<48} (replies of {min(lengths)}-{max(lengths)} tokens, greedy, beam 1)")

        # 2. keys while a long reply streams
        app.chat.set_settings(ReplySettings(min_len=args.stream_len, max_len=args.stream_len, no_repeat_ngram=0))
        box.value = ""
        draft = "a draft over\ntwo lines "
        app.chat.submit("tell me a long story")
        await until(lambda: app.chat.job is not None and len(app.chat.job.text) > 0)
        box.value = draft  # a multi-line message being written while the reply streams
        # The baseline, in the same process and under the same load: a one-line Input (the box the
        # chat had before the multi-line one) below it; keys alternate between the two.
        from textual.widgets import Input

        baseline = Input(id="bench-baseline-input", select_on_focus=False)
        await app.chat.mount(baseline)
        await asyncio.sleep(0.05)
        keys: list[float] = []
        base_keys: list[float] = []
        block = max(1, args.keys // 2)  # blocks of keys, alternating, so load drift hits both alike
        for i in range(2 * args.keys):
            if not app.chat.running:
                break
            target, out = (box, keys) if (i // block) % 2 == 0 else (baseline, base_keys)
            if i % block == 0:
                target.focus()
                await asyncio.sleep(0.3)  # focus moved: the footer redraws its keys, let it settle
            await asyncio.sleep(0.03)
            ch = "abcdefghijklmnopqrstuvwxyz"[i % 26]
            expect = target.value + ch
            t0 = time.perf_counter()
            send_key(app, ch)
            t1 = await until(lambda target=target, expect=expect: target.value == expect)
            out.append((t1 - t0) * 1000)
        streamed = len(app.chat.job.pieces)
        was_replying = app.chat.running
        send_key(app, "escape")
        await until(lambda: app.chat.job.reported)
        await baseline.remove()
        box.focus()
        if not was_replying:
            print(f"note: the reply ended before all {args.keys} keys were sent (raise --stream-len)")
        ok &= summary("key handled while a reply streams", keys, 50, stat="max")
        print(f"{'':<48} ({streamed} tokens streamed meanwhile; keys typed into the multi-line ChatInput)")
        summary("  baseline: one-line Input, same stream", base_keys, 50, stat="max")
        ms, base = sorted(keys), sorted(base_keys)
        print(
            f"{'':<48} ChatInput / Input: median x{statistics.median(ms) / max(1e-9, statistics.median(base)):.2f}, "
            f"p90 x{ms[int(0.9 * (len(ms) - 1))] / max(1e-9, base[int(0.9 * (len(base) - 1))]):.2f}"
        )

        # 3. temperature keys while the char LM streams
        await pilot.press("f3")
        app.gen.start("The ")
        await until(lambda: app.gen.job.count > 50)
        app.query_one("#gen-output").focus()
        await asyncio.sleep(0.05)
        temps: list[float] = []
        for i in range(args.keys):
            if not app.gen.running:
                break
            before = app.gen.settings.temperature
            key = "right_square_bracket" if i % 2 == 0 else "left_square_bracket"
            t0 = time.perf_counter()
            send_key(app, key, "]" if i % 2 == 0 else "[")
            t1 = await until(lambda before=before: app.gen.settings.temperature != before)
            temps.append((t1 - t0) * 1000)
            await asyncio.sleep(0.03)
        count = app.gen.job.count
        send_key(app, "escape")
        await until(lambda: app.gen.job.done)
        ok &= summary("[ / ] handled while the char LM streams", temps, 50, stat="max")
        print(f"{'':<48} ({count:,} characters streamed meanwhile)")
    return 0 if ok else 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=None, help="chat checkpoint (default: checkpoints/chat)")
    ap.add_argument("--lm", default=None, help="char LM checkpoint (default: checkpoints/charlm)")
    ap.add_argument("--messages", type=int, default=20)
    ap.add_argument("--keys", type=int, default=20)
    ap.add_argument("--stream-len", type=int, default=3000, help="tokens of the long reply keys are pressed during")
    ap.add_argument("--train-steps", type=int, default=30)
    args = ap.parse_args()
    args.checkpoint, args.lm = ensure_models(args.checkpoint, args.lm, args.train_steps)
    print(f"chat model: {args.checkpoint}\nchar LM:    {args.lm}")
    os.environ.setdefault("CHATRNN_DB", ":memory:")
    print(f"cpu cores: {os.cpu_count()}, load average: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
