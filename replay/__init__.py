"""Replay: read lab events back out of Kafka, see what today's chain would do, re-drive them.

Kafka's retention is the replay horizon. `labstream replay` answers "why did the
chain not fire?" and fixes it, dry run first:

    # what happened: records by time, key, trace, offsets or a filter
    labstream replay ls --topic lab.public.runs --from -2h \\
        --filter 'after.status == "completed" and op == "u"'
    labstream replay show lab.public.runs/0/42
    # what today's enrich/route/trigger would do with them (nothing is produced)
    labstream replay run --topic lab.public.runs --from -2h --filter '...'
    #   lab.public.runs/0/42 run-7 [hplc.completed]: then: skipped, no_rule_for_kind;
    #   now: fires rule hplc-peak-summary (would launch)
    # do it: produce them again (dry run by default; --execute to produce)
    labstream replay run ... --execute [--target-topic replay.x] [--rate 50] [--yes]
    labstream replay resume rp-20261125T141502-3f9a1c      # after Ctrl-C or a crash
    labstream replay history

Guarantees:
- a re-drive produces the original key/value bytes in original order per key, marks
  each record (`labstream-replay-id`, `labstream-replay-of: topic/partition/offset`)
  and starts a new trace per record, linked to the original trace;
- the job key of a replayed event equals the original's, so a job that already
  succeeded is not launched again unless `--rerun-succeeded`;
- progress is recorded after Kafka acknowledged each batch; `resume` neither skips
  nor duplicates, even after `kill -9`;
- production topics (`lab.*`) need `--yes` or a confirmation showing the count;
- records that no longer decode are counted as `undecodable`, reported, never produced.

Modules: `selection` (what; offsets; scan), `filterexpr` (the `--filter` language),
`timespec` (`--from/--to`), `record` (`ReplayRecord`), `decode`, `dryrun` (+
`reference`), `redrive` (+ `headers`), `store` (`labstream.replays`), `runner`
(orchestration), `cli`. Full guide: docs/replay.md.
"""
