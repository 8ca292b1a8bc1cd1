"""Regenerate, edit and n-best in the Chat tab: each adds a sibling in the store's tree, the old
branch stays reachable with < / >, and what is shown (and exported) is the active branch."""

from __future__ import annotations

import pytest

SIZE = (100, 40)


def views(app, role=None):
    from chatrnn.tui.widgets import MessageView

    return [v for v in app.query(MessageView) if role is None or v.role == role]


async def reply_done(pilot, app, fakes, before):
    await fakes.wait_for(pilot, lambda: app.chat.job is not before and app.chat.job.reported)
    await pilot.pause()


async def send(pilot, app, fakes, text):
    before = app.chat.job
    box = app.query_one("#chat-input")
    box.focus()
    box.value = text
    await pilot.press("enter")
    await reply_done(pilot, app, fakes, before)


def shown(app):
    return [(v.role, v.text.strip()) for v in views(app)]


def stored(app):
    return [(m.role, m.text) for m in app.store.messages(app.chat.conversation_id)]


async def test_ctrl_r_regenerates_and_lt_gt_flip_between_replies(make_app, fakes):
    bot = fakes.Responder(words=["first", "reply"])
    app = make_app(loader=fakes.Loader(chat=bot, lm=fakes.Generator()))
    async with app.run_test(size=SIZE) as pilot:
        await fakes.wait_for(pilot, lambda: app.chat.model is not None)
        await send(pilot, app, fakes, "hello")
        await send(pilot, app, fakes, "more")
        bot.words = ["second", "take"]
        before = app.chat.job
        app.chat.set_settings(app.chat.settings.__class__(temperature=0.3))  # the current settings are used
        await pilot.press("ctrl+r")
        await reply_done(pilot, app, fakes, before)
        assert shown(app) == [("user", "hello"), ("bot", "first reply"), ("user", "more"), ("bot", "second take")]
        # same message, same context as the first time
        assert bot.calls[-1] == bot.calls[-2] == ("more", ["hello", "first reply"])
        assert app.chat.job.settings.temperature == 0.3
        last = views(app, "bot")[-1]
        assert last.branch == (2, 2) and "2/2" in str(last.render())
        before = app.chat.job
        app.chat.command("/retry")
        await reply_done(pilot, app, fakes, before)
        assert views(app, "bot")[-1].branch == (3, 3)
        assert len(app.store.all_messages(app.chat.conversation_id)) == 6  # nothing replaced

        views(app, "bot")[-1].focus()
        await pilot.press("less_than_sign")
        await pilot.pause()
        assert app.focused.branch == (2, 3) and app.focused.text == "second take"
        await pilot.press("less_than_sign", "less_than_sign")  # stops at the first
        await pilot.pause()
        assert app.focused.branch == (1, 3) and app.focused.text.strip() == "first reply"
        assert stored(app)[-1] == ("bot", "first reply")  # the store's active branch follows
        await pilot.press("greater_than_sign")
        await pilot.pause()
        assert app.focused.branch == (2, 3)
        # the choice is remembered: reopening shows the same branch
        cid = app.chat.conversation_id
        app.action_new_conversation()
        app.open_conversation(cid)
        await pilot.pause()
        assert shown(app)[-1] == ("bot", "second take") and views(app, "bot")[-1].branch == (2, 3)


async def test_e_edits_a_message_into_a_new_branch_and_the_old_one_stays(make_app, fakes, tmp_path):
    bot = fakes.Responder(words=["ok"])
    app = make_app(loader=fakes.Loader(chat=bot, lm=fakes.Generator()))
    async with app.run_test(size=SIZE) as pilot:
        await fakes.wait_for(pilot, lambda: app.chat.model is not None)
        for text in ("one", "two", "three"):
            await send(pilot, app, fakes, text)
        views(app, "user")[1].focus()  # "two"
        await pilot.press("e")
        box = app.query_one("#chat-input")
        assert app.focused is box and box.value == "two" and app.chat.editing is not None
        # the hint ends the status line: it must fit beside the model and settings (it was cut
        # before "cancels" at 120 columns)
        status = app.chat.status_line()
        assert "Esc cancels" in status and len(status) <= SIZE[0], status
        box.value = "TWO, edited"
        bot.words = ["edited", "answer"]
        before = app.chat.job
        await pilot.press("enter")
        await reply_done(pilot, app, fakes, before)
        assert shown(app) == [("user", "one"), ("bot", "ok"), ("user", "TWO, edited"), ("bot", "edited answer")]
        assert bot.calls[-1] == ("TWO, edited", ["one", "ok"])  # the context before the edited message
        assert views(app, "user")[1].branch == (2, 2)
        assert stored(app) == [(r, t) for r, t in shown(app)]
        assert len(app.store.all_messages(app.chat.conversation_id)) == 8
        # back to the original: its whole branch ("three" and its reply) comes back
        views(app, "user")[1].focus()
        await pilot.press("less_than_sign")
        await pilot.pause()
        assert [t for _, t in shown(app)] == ["one", "ok", "two", "ok", "three", "ok"]
        # export writes the active branch
        out = tmp_path / "branch.md"
        app.export_conversation(app.chat.conversation_id, str(out))
        text = out.read_text("utf-8")
        assert "three" in text and "edited" not in text

        # /edit TEXT resends the last message changed; Esc cancels an edit started with e
        before = app.chat.job
        app.chat.command("/edit THREE")
        await reply_done(pilot, app, fakes, before)
        assert shown(app)[-2] == ("user", "THREE") and views(app, "user")[-1].branch == (2, 2)
        views(app, "user")[0].focus()
        await pilot.press("e")
        assert box.value == "one"
        await pilot.press("escape")
        assert app.chat.editing is None and box.value == ""
        # e on a reply edits the message it answers, not the last one
        views(app, "bot")[0].focus()
        await pilot.press("e")
        assert box.value == "one" and app.chat.editing is views(app, "user")[0]
        await pilot.press("escape")
        # /edit typed in the box: the last message comes into the box to be changed
        box.focus()
        await pilot.press(*"/edit", "enter")
        assert box.value == "THREE" and app.chat.editing is views(app, "user")[-1]


async def test_tree_commands_say_why_when_there_is_nothing_to_do(make_app, fakes):
    app = make_app(loader=fakes.Loader(chat=fakes.Responder(), lm=fakes.Generator()))
    async with app.run_test(size=SIZE) as pilot:
        await fakes.wait_for(pilot, lambda: app.chat.model is not None)
        for line in ("/retry", "/edit", "/pick 2", "/copy"):
            app.clear_notifications()
            app.chat.command(line)
            await pilot.pause()
            assert app._notifications and app.chat.job is None, line
        app.chat.command("/pick x")
        await pilot.pause()
        assert any("usage: /pick N" in n.message for n in app._notifications)


async def test_nbest_with_the_real_model_shows_scores_and_picking_one_makes_it_the_reply(
    make_app, in_checkpoints, has_chat_model, fakes
):
    if not has_chat_model:
        pytest.skip("the chat trainer is not available")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await fakes.wait_for(pilot, lambda: app.chat.model is not None, timeout=60)
        app.chat.command("/nbest 3")
        assert app.chat.settings.nbest == 3 and app.chat.settings.beam == 3  # beam raised to give 3
        app.chat.command("/beam 4")
        await send(pilot, app, fakes, "hello")
        reply = views(app, "bot")[-1]
        assert len(reply.nbest) == 3
        scores = [row[1] for row in reply.nbest]
        assert scores == sorted(scores, reverse=True) and all(s <= 0 for s in scores)
        assert reply.nbest[0][0] == reply.text.strip()  # the streamed reply is the best one
        body = str(reply.render())
        assert "n-best" in body and f"{scores[1]:7.3f}" in body
        # the list is stored with the reply
        assert len(app.store.messages(app.chat.conversation_id)[-1].meta["nbest"]) == 3
        reply.focus()
        await pilot.press("3")
        await pilot.pause()
        picked = views(app, "bot")[-1]
        assert picked.text.strip() == reply.nbest[2][0] and picked.branch == (2, 2)
        assert picked.attention and len(picked.attention) == len(picked.pieces)  # its own heatmap
        assert stored(app)[-1] == ("bot", reply.nbest[2][0])
        # picking the first again returns to the original sibling instead of adding another
        app.chat.command("/pick 1")
        await pilot.pause()
        assert views(app, "bot")[-1].branch == (1, 2)
        assert len(app.store.all_messages(app.chat.conversation_id)) == 3


async def test_rerank_mmi_is_a_chat_setting_that_reaches_the_model(make_app, in_checkpoints, has_chat_model, fakes):
    if not has_chat_model:
        pytest.skip("the chat trainer is not available")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await fakes.wait_for(pilot, lambda: app.chat.model is not None, timeout=60)
        app.chat.command("/rerank mmi")
        assert app.chat.settings.rerank == "mmi" and app.chat.settings.beam == 4  # it reranks the beam's
        app.chat.command("/mmi 0.75")
        app.chat.command("/nbest 3")
        assert app.chat.settings.mmi_lambda == 0.75
        await send(pilot, app, fakes, "hello")
        assert app.chat.job.settings.rerank == "mmi"
        reply = views(app, "bot")[-1]
        scores = [row[1] for row in reply.nbest]
        assert len(scores) == 3 and scores == sorted(scores, reverse=True)
        assert reply.nbest[0][0] == reply.text.strip()  # the streamed reply is MMI's best
        app.chat.command("/rerank bogus")
        await pilot.pause()
        assert any("rerank must be one of" in n.message for n in app._notifications)
