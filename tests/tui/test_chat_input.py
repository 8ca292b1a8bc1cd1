"""The Chat tab's message box and the keys around it: multi-line input, bracketed paste (intact,
capped with a notice), prompt history, copying to the clipboard, searching stored conversations."""

from __future__ import annotations

SIZE = (100, 40)


def views(app, role=None):
    from chatrnn.tui.widgets import MessageView

    return [v for v in app.query(MessageView) if role is None or v.role == role]


def paste(app, text):
    """A bracketed paste, as the terminal driver delivers it."""
    from textual import events

    event = events.Paste(text)
    event.set_sender(app)
    app._driver.send_message(event)


async def test_enter_sends_and_shift_enter_or_ctrl_j_insert_newlines(make_app, fakes):
    bot = fakes.Responder(words=["ok"])
    app = make_app(loader=fakes.Loader(chat=bot, lm=fakes.Generator()))
    async with app.run_test(size=SIZE) as pilot:
        await fakes.wait_for(pilot, lambda: app.chat.model is not None)
        box = app.query_one("#chat-input")
        assert app.focused is box
        height = box.size.height
        await pilot.press("a", "shift+enter", "b", "ctrl+j", "c", "ctrl+j", "d")
        assert box.value == "a\nb\nc\nd" and not bot.calls
        await pilot.pause()
        assert box.size.height > height  # it grows with its lines...
        await pilot.press(*["ctrl+j", "x"] * 10)
        await pilot.pause()
        assert box.size.height <= 8  # ...up to a few
        await pilot.press("enter")
        await fakes.wait_for(pilot, lambda: app.chat.job is not None and app.chat.job.reported)
        sent = "a\nb\nc\nd" + "\nx" * 10
        assert bot.calls[-1][0] == sent and box.value == ""
        assert app.store.messages(app.chat.conversation_id)[0].text == sent


async def test_a_pasted_block_stays_intact_and_a_huge_one_is_capped_with_a_notice(make_app, fakes):
    from chatrnn.tui.chat_input import MAX_INPUT

    bot = fakes.Responder(words=["ok"])
    app = make_app(loader=fakes.Loader(chat=bot, lm=fakes.Generator()))
    async with app.run_test(size=SIZE) as pilot:
        await fakes.wait_for(pilot, lambda: app.chat.model is not None)
        box = app.query_one("#chat-input")
        block = "def f(x):\r\n    return x\n\n# 안녕 😀\n"
        await pilot.press("h", "i", "space")
        paste(app, block)
        await fakes.wait_for(pilot, lambda: "return" in box.value)
        assert box.value == "hi def f(x):\n    return x\n\n# 안녕 😀\n"  # Enter inside the paste did not send
        assert not bot.calls
        await pilot.press("enter")
        await fakes.wait_for(pilot, lambda: app.chat.job is not None and app.chat.job.reported)
        assert bot.calls[-1][0] == "hi def f(x):\n    return x\n\n# 안녕 😀\n"

        app.clear_notifications()
        paste(app, "y" * 100_000)  # the largest message the tests send: no notice
        await fakes.wait_for(pilot, lambda: len(box.value) == 100_000)
        await pilot.pause()
        assert not app._notifications
        paste(app, "z" * (MAX_INPUT + 5))
        await fakes.wait_for(pilot, lambda: len(box.value) == MAX_INPUT)
        assert box.value == "y" * 100_000 + "z" * (MAX_INPUT - 100_000)
        await fakes.wait_for(pilot, lambda: app._notifications)
        [note] = list(app._notifications)
        assert "left out" in note.message and f"{100_005:,}" in note.message


async def test_up_and_down_recall_earlier_prompts(make_app, fakes):
    bot = fakes.Responder(words=["ok"])
    app = make_app(loader=fakes.Loader(chat=bot, lm=fakes.Generator()))
    async with app.run_test(size=SIZE) as pilot:
        await fakes.wait_for(pilot, lambda: app.chat.model is not None)
        box = app.query_one("#chat-input")
        for text in ("first", "two\nlines"):
            box.value = text
            before = app.chat.job
            await pilot.press("enter")
            await fakes.wait_for(pilot, lambda before=before: app.chat.job is not before and app.chat.job.reported)
        app.chat.command("/temp 0.5")  # commands are recalled too (as shells do)
        await pilot.press("d", "r", "a", "f", "t")
        await pilot.press("up")
        assert box.value == "two\nlines" and box.cursor_location == (0, 0)
        await pilot.press("up")
        assert box.value == "first"
        await pilot.press("up")  # the oldest stays
        assert box.value == "first"
        await pilot.press("down")  # newer: the cursor at its end, so down again goes on
        assert box.value == "two\nlines" and box.cursor_location == (1, 5)
        await pilot.press("up")  # not on the first line: up moves the cursor, as in any text box
        assert box.value == "two\nlines" and box.cursor_location[0] == 0
        await pilot.press("down", "down")
        assert box.value == "draft"  # what was being typed comes back
        # a reopened conversation brings its prompts back
        cid = app.chat.conversation_id
        app.action_new_conversation()
        box.prompts.clear()
        app.open_conversation(cid)
        await pilot.pause()
        box.value = ""
        await pilot.press("up")
        assert box.value == "two\nlines"


async def test_copy_a_message_the_last_reply_or_the_whole_conversation(make_app, fakes):
    bot = fakes.Responder(words=["fine", "thanks"])
    app = make_app(loader=fakes.Loader(chat=bot, lm=fakes.Generator()))
    async with app.run_test(size=SIZE) as pilot:
        await fakes.wait_for(pilot, lambda: app.chat.model is not None)
        for text in ("how are you?", "and\nyou?"):
            app.chat.submit(text)
            await fakes.wait_for(pilot, lambda: app.chat.job.reported)
            await pilot.pause()
        views(app, "user")[1].focus()
        await pilot.press("c")
        assert app.clipboard == "and\nyou?"
        await pilot.press("C")
        whole = "You: how are you?\n\nBot: fine thanks\n\nYou: and\nyou?\n\nBot: fine thanks\n"
        assert app.clipboard == whole
        app.copy_to_clipboard("")
        app.chat.command("/copy")
        assert app.clipboard == whole
        app.chat.command("/copy last")
        assert app.clipboard == "fine thanks"
        # the mouse selects text in a message (Textual's text selection), ctrl+c copies it
        app.copy_to_clipboard("")
        bot_view = views(app, "bot")[-1]
        await pilot.mouse_down(bot_view, offset=(2, 1))
        await pilot.hover(bot_view, offset=(12, 1))
        await pilot.mouse_up(bot_view, offset=(12, 1))
        await pilot.pause()
        assert app.screen.get_selected_text() == "fine thanks"
        await pilot.press("ctrl+c")
        assert app.clipboard == "fine thanks"


async def test_ctrl_f_searches_stored_conversations_and_opens_the_hit(make_app, fakes):
    from chatrnn.tui.search import SearchScreen

    bot = fakes.Responder(words=["ok"])
    app = make_app(loader=fakes.Loader(chat=bot, lm=fakes.Generator()))
    async with app.run_test(size=SIZE) as pilot:
        await fakes.wait_for(pilot, lambda: app.chat.model is not None)
        store = app.store
        old = store.create_conversation(title="old talk")
        u = store.add_message(old.id, "user", "where is the kitchen")
        first = store.add_message(old.id, "bot", "downstairs")
        store.add_message(old.id, "bot", "upstairs, past the piano", parent_id=u.id)  # the active branch
        for i in range(3):
            app.chat.submit(f"unrelated {i}")
            await fakes.wait_for(pilot, lambda: app.chat.job.reported)
        await pilot.press("ctrl+f")
        assert isinstance(app.screen, SearchScreen)
        await pilot.press(*"DOWNSTAIRS")
        await pilot.pause()
        assert app.screen.hits == [(old.id, first.id)]
        await pilot.press("enter", "enter")  # to the results, open the hit
        await pilot.pause()
        await pilot.pause()
        assert not isinstance(app.screen, SearchScreen)
        assert app.chat.conversation_id == old.id
        # the hit's branch is the one shown, with the hit focused
        assert [v.text.strip() for v in views(app)] == ["where is the kitchen", "downstairs"]
        assert app.focused is views(app, "bot")[0] and app.focused.branch == (1, 2)

        app.chat.command("/search nothing-like-this")
        await pilot.pause()
        assert isinstance(app.screen, SearchScreen) and app.screen.hits == []
        assert "No message contains" in str(app.screen.query_one("#search-empty").render())
        await pilot.press("escape")
        assert not isinstance(app.screen, SearchScreen) and app.chat.conversation_id == old.id
