"""Turn-taking: side items never run during a forward while enabled, a waiting forward is not starved."""
from __future__ import annotations

import threading
import time
from unittest import mock

import pytest

from darknet_torch.video.turns import CoreTurns


def entered(turn) -> tuple[threading.Event, object]:
    """Enter the context ``turn`` in a daemon thread and stay in it; the event is set once inside.  The caller keeps
    the returned context alive (a collected generator context would leave its turn)."""
    inside = threading.Event()
    threading.Thread(target=lambda: (turn.__enter__(), inside.set()), daemon=True).start()
    return inside, turn


def test_a_side_item_waits_for_the_running_forward():
    turns = CoreTurns()
    with turns.forward():
        finished, _side = entered(turns.side())
        assert not finished.wait(0.2)
    assert finished.wait(5)


def test_a_forward_waits_for_side_items_in_progress_and_holds_back_new_ones():
    turns = CoreTurns()
    item = turns.side()
    item.__enter__()
    forward_done, _forward = entered(turns.forward())
    time.sleep(0.1)  # the forward now waits for its turn
    new_item_started, _new = entered(turns.side())
    assert not forward_done.wait(0.2) and not new_item_started.wait(0.1)
    item.__exit__(None, None, None)
    assert forward_done.wait(5)
    assert not new_item_started.wait(0.1)  # the forward runs (never exited)


def test_disabled_turns_never_block_and_disabling_releases_waiters():
    turns = CoreTurns(enabled=False)
    with turns.forward(), turns.side(), turns.side():
        pass
    turns.set_enabled(True)
    forward = turns.forward()
    forward.__enter__()
    finished, _side = entered(turns.side())
    assert not finished.wait(0.2)
    turns.set_enabled(False)
    assert finished.wait(5)


def test_an_interrupted_forward_wait_gives_the_turn_back():
    turns = CoreTurns()
    item = turns.side()
    item.__enter__()
    forward = turns.forward()
    with mock.patch.object(threading.Condition, "wait_for", side_effect=KeyboardInterrupt):
        with pytest.raises(KeyboardInterrupt):
            forward.__enter__()
    item.__exit__(None, None, None)
    new_item, _new = entered(turns.side())
    assert new_item.wait(5)
