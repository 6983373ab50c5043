"""The summariser behind `scripts/summarize.py`, one responsibility per module.

    runs         reading: a run folder (run.json, metrics.jsonl, summary.json) -> Run, the
                 settings that make an experiment, every run under some folders
    methods      method names and row order from the method classes (distiller_zoo.METHODS)
    experiments  grouping: which runs are one experiment, what tells experiments apart (the
                 row labels), the teachers of a pair
    tables       markdown: the CIFAR-100 tables (last/best epoch, vanilla runs) and the
                 teachers under them
    transfer     markdown: the linear-probe transfer tables (eval_rep.py runs), per data set
    report       the whole document: real and generated-data sections, unfinished runs, problems
    plots        accuracy curves, one PNG per pair

Each module imports only those above it in this list (`methods` needs `runs`' number parser).
"""
