"""`labstream explain`: why a change did, or did not, end in a successful job.

    labstream explain exp-123                 # an experiment id
    labstream explain 4bf92f3577b34da6a3ce929d0e0e4736 --json   # a trace id (or traceparent)

Four answers, in chain order, each ✔/✘ with its evidence:

1. Did the change reach Kafka? (topic/partition/offset, delay after commit;
   if not: is the table in the publication, is the connector running)
2. Did a rule match and the trigger fire? (the decisions on `lab.decisions`;
   if not: the skip reason, the rule to add or fix, the replay command)
3. Did the job start? (jobs row, backend, attempt, launch error)
4. Did it succeed? (exit code, duration, last log lines)

and, for the first one that is not ✔, what to do next.

Modules: `model` (the facts, plain records), `facts` (reads them from the lab
DB and Kafka), `kafkascan` (bounded Kafka reads), `verdict` (pure: facts ->
answers), `render` (text and `--json`), `cli` (the click command).
"""
