"""Session hooks of the fuzz suite: close the worker pool, write the counts (``$GEODL_FUZZ_OUT``)
and print them in the terminal summary."""

import os

from ._harness import RESULTS, close_pool, totals, write_report


def pytest_sessionfinish(session, exitstatus):
    close_pool()
    out = os.environ.get("GEODL_FUZZ_OUT")
    if out and RESULTS:
        write_report(out)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not RESULTS:
        return
    tr = terminalreporter
    tr.section("geodl fuzz counts")
    for name, rec in sorted(RESULTS.items()):
        c = rec["counts"]
        tr.write_line(f"{name:45s} tried {c['tried']:4d}  ok {c['ok']:4d}  clean {c['clean']:4d}  other {c['other']:3d}  "
                      f"wrong {c['wrong']:3d}  hang {c['hang']:2d}  ({rec['seconds']} s)")
    t = totals()
    tr.write_line(f"{'TOTAL':45s} tried {t['tried']:4d}  ok {t['ok']:4d}  clean {t['clean']:4d}  other {t['other']:3d}  "
                  f"wrong {t['wrong']:3d}  hang {t['hang']:2d}  harness {t['harness']}")
