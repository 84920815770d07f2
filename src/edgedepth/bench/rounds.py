"""The rounds of a benchmark: within each thread count every cell takes its turn, run by run, and an sgemm
measurement closes each round; progress lines on stderr say how far it is."""

from __future__ import annotations

import math
import sys
import time

from edgedepth.bench.cells import Row
from edgedepth.bench.machine import sgemm_peak_gflops
from edgedepth.runtime.timing import interleaved

#: The sgemm measurement after each round: the best of this many 1024-cubed products (~20 ms each).
SGEMM_REPEATS_PER_ROUND = 2

#: While the rounds run, a progress line at most this often (seconds), and after the first and the last round.
PROGRESS_SECONDS = 10.0


def time_rounds(rows: list[Row], threads: tuple[int, ...], runs: int, warmup: int, sgemm: list[float],
                progress: Progress) -> None:
    """Within each thread count, every row's cell at that count takes turns with the others, run by run
    (:func:`~edgedepth.runtime.timing.interleaved`); an sgemm measurement closes every round, appended to
    ``sgemm``. The cells keep their latencies."""
    timed = [row for row in rows if row.error is None]
    per_count = warmup + runs
    rounds = len(threads) * per_count
    done = reported = 0
    start = time.monotonic()
    last_report = -math.inf
    cells = [cell for row in rows for cell in row.cells.values()]
    for count in threads:
        def close_round(turn: int, count: int = count) -> None:
            nonlocal done, last_report
            sgemm.append(sgemm_peak_gflops(repeats=SGEMM_REPEATS_PER_ROUND))
            done += 1
            now = time.monotonic()
            if done in (1, rounds) or now - last_report >= PROGRESS_SECONDS:
                left = format_duration(time_left(done, rounds, now - start))
                progress.say(f"[timing {_threads(count)}: round {turn + 1}/{per_count}, {done}/{rounds} in all] "
                             f"about {left} left")
                last_report = now

        latencies = interleaved([row.timer(count) for row in timed], runs, warmup, close_round)
        for row, times in zip(timed, latencies, strict=True):
            row.cells[count].latencies_ms.extend(times)
        for cell in (c for c in cells if c.threads == count):
            reported += 1
            error = cell.error or next(row.error for row in rows if cell in row.cells.values())
            result = f"failed: {error}" if error or not cell.latencies_ms else f"{cell.median_ms:.1f} ms"
            progress.say(f"[{reported}/{len(cells)}] {cell.model} {cell.runtime} {_threads(count)}: {result}")


def _threads(count: int) -> str:
    return f"{count} thread{'s' if count > 1 else ''}"


class Progress:
    """Progress lines on stderr (the table goes to stdout), or nothing."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def say(self, line: str) -> None:
        if self.enabled:
            print(line, file=sys.stderr, flush=True)


def time_left(done: int, total: int, elapsed: float) -> float:
    """Seconds left if the ``total - done`` steps to go take as long, each, as the ``done`` ones did."""
    if done <= 0:
        return math.nan
    return elapsed / done * max(total - done, 0)


def format_duration(seconds: float) -> str:
    """``45 s``, ``3 min 05 s``, ``1 h 02 min``; ``?`` when unknown."""
    if not math.isfinite(seconds):
        return "?"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"
