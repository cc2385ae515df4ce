"""Calls go to the channel with the fewest in flight (``clients.loadtest.load.LeastBusy``)."""

from __future__ import annotations

from clients.loadtest.load import LeastBusy


def test_idle_channels_are_taken_in_rotation() -> None:
    picker = LeastBusy(3)
    taken = []
    for _ in range(6):
        lane = picker.take()
        taken.append(lane)
        picker.give_back(lane)
    assert taken == [0, 1, 2, 0, 1, 2]


def test_a_channel_whose_calls_return_sooner_gets_more_of_them() -> None:
    # Lane 0 stands for a channel on a loaded worker: its call stays in flight; lane 1's
    # calls come back at once, so every later call goes to lane 1.
    picker = LeastBusy(2)
    assert picker.take() == 0
    sent = []
    for _ in range(5):
        lane = picker.take()
        sent.append(lane)
        picker.give_back(lane)
    assert sent == [1, 1, 1, 1, 1]


def test_busy_lanes_are_avoided() -> None:
    picker = LeastBusy(3)
    first = [picker.take() for _ in range(3)]  # one call on each lane
    assert sorted(first) == [0, 1, 2]
    picker.give_back(2)
    assert picker.take() == 2  # the only lane with nothing in flight
    picker.give_back(0)
    picker.give_back(1)
    # lanes 0 and 1 idle, lane 2 busy: the next two calls use 0 and 1, in either order
    assert sorted([picker.take(), picker.take()]) == [0, 1]
    # now every lane holds one call: a tie, so the rotation decides, and no lane gets a
    # second call before every other lane has one too
    seconds = [picker.take() for _ in range(3)]
    assert sorted(seconds) == [0, 1, 2]
