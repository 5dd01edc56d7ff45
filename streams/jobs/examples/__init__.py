"""Example jobs bundled with labstream, run by the default trigger rules and the tests.

- `hplc_peak_summary`: summarise the peaks of one HPLC run (count, main peak, purity).
- `retrain_model`: fit a calibration line (peak area vs. injected volume) from recent runs.

Both read the lab DB from LABSTREAM_DATABASE_URL, write their results as log lines,
and join the launcher's trace (TRACEPARENT) with their own spans when tracing is on.
"""
