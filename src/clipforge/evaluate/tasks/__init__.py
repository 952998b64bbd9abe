"""One module per evaluation task; each exposes ``run_<task>(config, encoder) -> TaskOutput``
(the few-shot and linear-probe tasks share :mod:`.fewshot`)."""
