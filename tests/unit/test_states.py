"""states.py: the state sets and precedence()."""

from __future__ import annotations

from djtasks import states


def test_precedence_orders_finished_over_running_over_waiting() -> None:
    order = [
        states.SUCCESS,
        states.FAILURE,
        states.REVOKED,
        states.STARTED,
        states.RECEIVED,
        states.RETRY,
        states.PENDING,
    ]
    ranks = [states.precedence(s) for s in order]
    assert ranks == sorted(ranks)
    assert len(set(ranks)) == len(ranks)


def test_custom_states_rank_just_above_pending() -> None:
    custom = states.precedence(states.PROGRESS)
    assert custom == states.precedence("SOMETHING_ELSE")
    assert states.precedence(states.RETRY) < custom < states.precedence(states.PENDING)


def test_ready_and_unready_states_partition_all_states() -> None:
    assert states.READY_STATES == {states.SUCCESS, states.FAILURE, states.REVOKED}
    assert states.READY_STATES | states.UNREADY_STATES == states.ALL_STATES
    assert not states.READY_STATES & states.UNREADY_STATES
    assert states.WAITING_STATES == {states.PENDING, states.RETRY}
    assert states.PROPAGATE_STATES <= states.READY_STATES
    assert states.PROGRESS not in states.ALL_STATES


def test_model_choices_are_the_built_in_states() -> None:
    assert {value for value, _ in states.CHOICES} == states.ALL_STATES
