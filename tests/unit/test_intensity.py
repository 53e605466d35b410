"""The restart-intensity window, pure and sync (OTP's MaxR in MaxT)."""

import pytest

from trio_peeper._intensity import Intensity


def test_max_restarts_inside_the_window_are_allowed_one_more_is_not() -> None:
    window = Intensity(3, 5.0)
    assert [window.add(t) for t in (0.0, 1.0, 2.0)] == [False, False, False]
    assert window.add(3.0) is True
    assert window.count == 4


def test_the_edge_of_the_window_still_counts_as_in_otp() -> None:
    window = Intensity(1, 5.0)
    assert window.add(0.0) is False
    assert window.add(5.0) is True  # exactly max_seconds later: R >= Now - Period
    window = Intensity(1, 5.0)
    window.add(0.0)
    assert window.add(5.000001) is False


def test_zero_restarts_means_the_first_restart_gives_up() -> None:
    assert Intensity(0, 5.0).add(0.0) is True


@pytest.mark.parametrize(
    ("max_restarts", "max_seconds", "message"),
    [
        (-1, 5.0, r"^max_restarts must be an int >= 0, got -1$"),
        (1.5, 5.0, r"^max_restarts must be an int >= 0, got 1\.5$"),
        (1, 0, r"^max_seconds must be a number > 0, got 0$"),
        (1, "5", r"^max_seconds must be a number > 0, got '5'$"),
    ],
)
def test_bad_flags_are_named(max_restarts: object, max_seconds: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Intensity(max_restarts, max_seconds)  # type: ignore[arg-type]


def test_would_exceed_predicts_add_without_recording() -> None:
    window = Intensity(2, 5.0)
    window.add(0.0)
    window.add(1.0)
    assert window.would_exceed(2.0) is True
    assert window.count == 2  # nothing recorded
    assert window.would_exceed(5.5) is False  # the restart at 0.0 left the window
    assert window.add(5.5) is False
