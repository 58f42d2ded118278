"""analyze's progress callback: matrices counted as they are solved, the modelled work
(``plan_cost``) for callbacks that take it, and the CLI's time-left estimate."""

import numpy as np
import pytest

from spectracli.analyze import AnalyzeConfig, analyze_checkpoint, plan_cost
from spectracli.cli.common import remaining_seconds
from spectracli.io.memory import memory_checkpoint


def weights() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"embed.weight": rng.standard_normal((600, 40)),
            "a.weight": rng.standard_normal((30, 40)),
            "b.weight": rng.standard_normal((40, 40)),
            "c.weight": rng.standard_normal((12, 40))}


CONFIG = AnalyzeConfig(threads=2, ci_resamples=0, farms_window=16)


def test_plain_callbacks_get_matrices_done_and_end_at_the_total():
    calls = []
    analyze_checkpoint(memory_checkpoint(weights()), CONFIG,
                       progress=lambda done, total, name: calls.append((done, total, name)))
    done = [c[0] for c in calls]
    assert all(c[1] == 4 for c in calls)
    assert done == sorted(done) and done[-1] == 4 and calls[-1][2] == ""
    # every matrix is counted once, when solved: 1, 2, 3, 4 each appear
    assert {1, 2, 3, 4} <= set(done)


def test_work_callbacks_get_each_matrix_modelled_cost_once():
    calls = []

    def progress(done, total, name, work):
        calls.append((done, name, work))

    analyze_checkpoint(memory_checkpoint(weights()), CONFIG, progress=progress)
    totals = {w[1] for _, _, w in calls}
    assert len(totals) == 1
    total = totals.pop()
    steps = {}
    previous = 0.0
    for _, name, (work_done, _) in calls:
        if work_done > previous:
            steps[name] = work_done - previous
            previous = work_done
    assert previous == pytest.approx(total)  # the last call: all the work
    assert set(steps) == set(weights())
    # the 600 x 40 embedding weighs more than the 12 x 40 matrix, as the cost model says
    assert steps["embed.weight"] > 5 * steps["c.weight"]
    assert sum(steps.values()) == pytest.approx(total)


def test_plan_cost_counts_the_farms_windows_of_the_grid_in_use():
    from spectracli.spectral.farms import farms_grid, solve_cost

    class Plan:
        matrix_shape, n_matrices, farms = (5632, 2048), 1, True

    for layout in ("bounded", "released"):
        config = AnalyzeConfig(farms_grid=layout, ci_resamples=0)
        grid = farms_grid(5632, 2048, 2000, 1.0, 10, layout, config.farms_budget)
        fits = 300.0 * 2 * 2048
        expected = solve_cost(5632, 2048) + grid.n_windows * solve_cost(2000, 2000) + fits
        assert plan_cost(Plan(), config) == pytest.approx(expected)
    assert plan_cost(Plan(), AnalyzeConfig(farms=False, ci_resamples=0)) == pytest.approx(
        solve_cost(5632, 2048) + 300.0 * 2048)


def test_time_left_is_the_mean_rate_so_far():
    assert remaining_seconds(None, 0, 10) is None
    assert remaining_seconds(5.0, 0, 10) is None  # nothing done: no rate yet
    assert remaining_seconds(30.0, 25, 100) == pytest.approx(90.0)
    assert remaining_seconds(30.0, 100, 100) == 0.0
    assert remaining_seconds(30.0, 10, None) is None


def test_a_callback_with_a_positional_only_work_gets_the_plain_three_arguments():
    calls = []

    def progress(done, total, name, work=None, /):  # 'work' cannot be passed by keyword
        calls.append((done, total, name, work))

    analyze_checkpoint(memory_checkpoint(weights()), CONFIG, progress=progress)
    assert calls and calls[-1] == (4, 4, "", None)


@pytest.mark.parametrize("progress", [True, "bar"])
def test_a_progress_that_is_not_callable_is_refused_in_library_words(progress):
    from spectracli.errors import SpectraTypeError

    with pytest.raises(SpectraTypeError, match=r"^progress must be a callable .* got "):
        analyze_checkpoint(memory_checkpoint(weights()), CONFIG, progress=progress)
